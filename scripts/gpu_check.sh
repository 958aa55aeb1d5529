#!/usr/bin/env bash
# The GPU machine's one command: installs the carried wheels (scripts/gpu_wheels.sh fills wheels/ on a machine
# with PyPI) into the preinstalled Python with --no-deps, then runs the check: random weights in the official
# layouts, the full pipeline without ROS at 640x480, 1/3/10 objects, fp32/fp16/bf16, memory over 2,000 frames
# next to stock DeAOT; one JSON (out/gpu_check.json, or $OUT/gpu_check.json when $OUT is set), one table.
# Finishes within 5 minutes (the tool's --budget, 270 s by default, cuts runs short). Extra args go to the tool.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
wheels=${HQSMEM_WHEELS:-$repo/wheels}
if ! "$python" -c "import aot, segment_anything_hq" 2>/dev/null; then
  ls "$wheels"/*.whl >/dev/null 2>&1 || { echo "gpu_check: no wheels in $wheels (run scripts/gpu_wheels.sh)" >&2; exit 1; }
  "$python" -m pip install -q --disable-pip-version-check --no-index --no-deps "$wheels"/*.whl
fi
out=${OUT:-$repo/out}
cd "$repo"
exec "$python" -m hqsmem_ros.tools.gpu_check --out "$out/gpu_check.json" "$@"
