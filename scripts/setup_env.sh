#!/usr/bin/env bash
# Create (or refresh) the uv-managed virtual environment of one ComfyUI host and fetch that host.
#   bash scripts/setup_env.sh [HOST]      HOST: v0.3.64, v0.33.0, oldest or newest (default: $MOTIONKIT_COMFY_HOST,
#   else the ComfyUI this pack sits in, else the oldest; see scripts/get_comfyui.py)
# The venv is $MOTIONKIT_VENV, else .venv for the oldest host and .venv-<host> for the others; each has
# that host's own requirements (and so its own pinned frontend) plus MotionKit's, torch pinned for tests.
# Also installs the newest frontend that the browser tests serve with --front-end-root (see FRONTEND
# below) into the user cache. Prints progress on stderr and, on stdout, the ComfyUI path and then the venv
# path, one a line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
host="${1:-${MOTIONKIT_COMFY_HOST:-}}"

# uv itself: pipx, else pip's user site, else a small bootstrap venv (Debian's system Python refuses
# `pip install --user`: PEP 668), else Astral's installer. Each lands uv on PATH for this script.
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
    boot="${XDG_CACHE_HOME:-$HOME/.cache}/motionkit/uv-bootstrap"
    [ -x "$boot/bin/uv" ] && export PATH="$boot/bin:$PATH"
fi
if ! command -v uv >/dev/null 2>&1; then
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

comfy="$(python3 scripts/get_comfyui.py ${host:+--host "$host"})"
name="$(python3 -c 'import sys; sys.path.insert(0, "scripts"); import get_comfyui as g; print(g.host_named(sys.argv[1]).name)' "$host")"
echo "[setup] ComfyUI $name: $comfy" >&2

if [ -n "${MOTIONKIT_VENV:-}" ]; then
    venv="$MOTIONKIT_VENV"
elif [ "$name" = "$(python3 scripts/get_comfyui.py --list | sed -n 1p)" ]; then
    venv="$root/.venv"
else
    venv="$root/.venv-$name"
fi
if [ ! -x "$venv/bin/python" ]; then
    uv venv --quiet --python "${MOTIONKIT_PYTHON:-3.11}" "$venv"
fi
# ComfyUI's requirements, MotionKit's own, and the test extra; torch pinned for tests only.
# `requests` is imported by older ComfyUI's frontend manager but missing from its requirements.txt.
uv pip install --quiet --python "$venv/bin/python" \
    -r "$comfy/requirements.txt" -r pyproject.toml --extra test requests \
    --constraint tests/constraints.txt

# The newest frontend on the registry, for the browser tests' "current frontend" lanes (classic canvas
# and Nodes 2.0), served by the host with --front-end-root. Kept out of the venvs so each host keeps its
# own pinned frontend.
FRONTEND="${MOTIONKIT_FRONTEND_VERSION:-1.58.1}"
cache="${MOTIONKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/motionkit}"
fe="$cache/frontends/$FRONTEND"
if [ ! -f "$fe/comfyui_frontend_package/static/index.html" ]; then
    rm -rf "$fe.partial"
    uv pip install --quiet --python "$venv/bin/python" --no-deps --target "$fe.partial" \
        "comfyui-frontend-package==$FRONTEND" && mv "$fe.partial" "$fe" \
        || echo "[setup] could not install comfyui-frontend-package==$FRONTEND (its browser-test lanes will fail)" >&2
fi

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
echo "$venv"
