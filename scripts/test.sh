#!/usr/bin/env bash
# The whole test suite on a fresh machine: uv environment, pinned ComfyUI, then pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh >/dev/null
exec .venv/bin/pytest "$@"  # not `python -m pytest`, which would put the checkout on sys.path
