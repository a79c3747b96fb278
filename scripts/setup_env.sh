#!/usr/bin/env bash
# Create (or refresh) the project's uv-managed virtual environment in .venv and fetch the pinned ComfyUI.
# Prints nothing but progress; safe to run repeatedly (uv only installs what is missing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# uv itself: pipx, else pip's user site, else a small bootstrap venv (Debian's system Python refuses
# `pip install --user`: PEP 668), else Astral's installer. Each lands uv on PATH for this script.
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
    boot="${XDG_CACHE_HOME:-$HOME/.cache}/motionkit/uv-bootstrap"
    if command -v pipx >/dev/null 2>&1 && pipx install --quiet uv >/dev/null 2>&1; then
        echo "[setup] installed uv with pipx" >&2
    elif python3 -m pip install --quiet --user uv >/dev/null 2>&1; then
        echo "[setup] installed uv with pip (user site)" >&2
    elif python3 -m venv "$boot" >/dev/null 2>&1 && "$boot/bin/python" -m pip install --quiet uv; then
        echo "[setup] installed uv into $boot" >&2
        export PATH="$boot/bin:$PATH"
    elif command -v curl >/dev/null 2>&1; then
        echo "[setup] installing uv with Astral's installer" >&2
        curl -LsSf https://astral.sh/uv/install.sh | sh >/dev/null
    fi
    command -v uv >/dev/null 2>&1 || {
        echo "[setup] could not install uv: see https://docs.astral.sh/uv/getting-started/installation/" >&2
        exit 1
    }
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
    sudo=""
    [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && sudo="sudo -n"; }
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; }; then
        echo "[setup] installing Debian's chromium for the browser tests" >&2
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
    else
        echo "[setup] chromium not found: install it (Debian: apt-get install chromium) for the browser" \
             "tests, or set MOTIONKIT_SKIP_BROWSER_TESTS=1 to skip them" >&2
    fi
fi
echo "[setup] environment ready: $venv" >&2
echo "$comfy"
