#!/usr/bin/env bash
# Create (or refresh) the project's uv-managed virtual environment in .venv and fetch the pinned ComfyUI.
# Prints nothing but progress; safe to run repeatedly (uv only installs what is missing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v uv >/dev/null 2>&1; then
    echo "[setup] installing uv with pip (user site)" >&2
    python3 -m pip install --quiet --user uv
    export PATH="$HOME/.local/bin:$PATH"
fi

comfy="$(python3 scripts/get_comfyui.py)"
echo "[setup] ComfyUI: $comfy" >&2

venv="${MOTIONKIT_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
    uv venv --quiet --python "${MOTIONKIT_PYTHON:-3.11}" "$venv"
fi
export VIRTUAL_ENV="$venv"
# ComfyUI's requirements, MotionKit's own, and the test extra; torch pinned for tests only.
# `requests` is imported by ComfyUI's frontend manager but missing from its requirements.txt.
uv pip install --quiet --python "$venv/bin/python" \
    -r "$comfy/requirements.txt" -r pyproject.toml --extra test requests \
    --constraint tests/constraints.txt
# Browser tests drive Debian's Chromium through Playwright (Playwright's own browser download is not used).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing Debian's chromium for the browser tests" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "[setup] chromium not found: install it (Debian: apt-get install chromium) for the browser tests" >&2
    fi
fi
echo "[setup] environment ready: $venv" >&2
echo "$comfy"
