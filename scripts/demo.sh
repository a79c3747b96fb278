#!/usr/bin/env bash
# The main job on a fresh machine: uv environment, ComfyUI (the oldest supported host unless
# MOTIONKIT_COMFY_HOST names another), then the example workflow headless.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
env_line="$(bash scripts/setup_env.sh)"
exec "${env_line##*$'\n'}/bin/python" scripts/demo.py "$@"
