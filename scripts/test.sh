#!/usr/bin/env bash
# The whole test suite on every supported ComfyUI host (this is what CI runs):
#   bash scripts/test.sh [pytest args...]
# Each host gets its own uv venv and its own clone of ComfyUI (scripts/setup_env.sh); the suite runs once
# per host. MOTIONKIT_COMFY_HOST=v0.33.0 (or oldest / newest) runs one host only; MOTIONKIT_VENV then
# names that host's venv. Exits non-zero when any host fails; a summary per host is printed at the end.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ -n "${MOTIONKIT_COMFY_HOST:-}" ]; then
    hosts="$MOTIONKIT_COMFY_HOST"
else
    hosts="$(python3 scripts/get_comfyui.py --list)"
    unset MOTIONKIT_VENV  # one venv per host
fi
status=0
summary=""
for host in $hosts; do
    echo "===== MotionKit tests on ComfyUI $host =====" >&2
    env_line="$(bash scripts/setup_env.sh "$host")" || { status=1; summary+="$host: set-up failed"$'\n'; continue; }
    venv="${env_line##*$'\n'}"
    start=$SECONDS
    # `pytest` itself, not `python -m pytest`, which would put the checkout on sys.path
    MOTIONKIT_COMFY_HOST="$host" "$venv/bin/pytest" "$@"
    rc=$?
    [ $rc -eq 0 ] || status=1
    summary+="$host: pytest exit $rc in $((SECONDS - start)) s"$'\n'
done
printf '===== summary =====\n%s' "$summary" >&2
exit $status
