#!/usr/bin/env bash
# The test suite on the pip route: sets up (idempotent), then runs every test that can run here.
# Each run gets its own ROS_DOMAIN_ID and discovery stays on this machine. Extra args go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/setup.sh"
venv=${HQSMEM_VENV:-$repo/.venv}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 90) + 5 ))}
export HF_HUB_OFFLINE=1
cd "$repo"
exec "$venv/bin/pytest" "$@"
