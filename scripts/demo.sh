#!/usr/bin/env bash
# The main job on a fresh machine: uv environment, pinned ComfyUI, then the example workflow headless.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh >/dev/null
exec .venv/bin/python scripts/demo.py "$@"
