#!/usr/bin/env bash
# Fills wheels/ (gitignored) with the two model packages the GPU machine lacks, for scripts/gpu_check.sh to
# install there without a network: deaotpy and segment-anything-hq, no dependencies (the machine has torch,
# torchvision, timm, opencv and numpy). Checks they fit what travels with the tree (64 MiB in all).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || python=python3
mkdir -p "$repo/wheels"
"$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$repo/wheels" \
  deaotpy==1.11.0 segment-anything-hq==0.3 2>/dev/null \
  || "$python" -m pip download -q --disable-pip-version-check --no-deps -d "$repo/wheels" \
       deaotpy==1.11.0 segment-anything-hq==0.3
ls -l "$repo/wheels"
total=$(du -sb "$repo/wheels" | cut -f1)
echo "gpu_wheels: $((total / 1024)) KiB in $repo/wheels"
[ "$total" -le $((64 * 1024 * 1024)) ] || { echo "gpu_wheels: over 64 MiB" >&2; exit 1; }
