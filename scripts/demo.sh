#!/usr/bin/env bash
# The first command to run: sets up the venv (idempotent), then the demo: a sample bag replayed through
# the tracker node over ROS 2 topics, scored, with an overlay video and a plot under ./out/demo.
# Extra args go to the demo (e.g. --frames 20 --size 320x240 for a short run; --help for all).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/setup.sh"
venv=${HQSMEM_VENV:-$repo/.venv}
export HF_HUB_OFFLINE=1
exec "$venv/bin/python" -m hqsmem_ros.tools.demo "$@"
