#!/usr/bin/env bash
# The whole test suite on every supported ComfyUI host (this is what CI runs):
#   bash scripts/test.sh [pytest args...]
# Each host gets its own uv venv and its own clone of ComfyUI (scripts/setup_env.sh); the suite runs once
# per host. MOTIONKIT_COMFY_HOST=v0.33.0 (or oldest / newest) runs one host only; MOTIONKIT_VENV then
# names that host's venv. On the newest host the browser tests (-m browser) run again on each frontend lane
# of MOTIONKIT_FRONTEND_LANES (default: the newest frontend in the classic canvas, then with Nodes 2.0; see
# tests/motionkit_testing/frontends.py; empty: none). Exits non-zero when any run fails; a summary per host
# and lane is printed at the end.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ -n "${MOTIONKIT_COMFY_HOST:-}" ]; then
    hosts="$MOTIONKIT_COMFY_HOST"
else
    hosts="$(python3 scripts/get_comfyui.py --list)"
    unset MOTIONKIT_VENV  # one venv per host
fi
newest="$(python3 scripts/get_comfyui.py --list | tail -n 1)"
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
    [ "$host" = "$newest" ] || [ "$host" = newest ] || continue
    fe="${MOTIONKIT_FRONTEND_VERSION:-1.58.1}"  # the frontend setup_env.sh installs
    for lane in ${MOTIONKIT_FRONTEND_LANES-$fe $fe-nodes2}; do
        echo "===== MotionKit browser tests on ComfyUI $host, frontend $lane =====" >&2
        start=$SECONDS
        MOTIONKIT_COMFY_HOST="$host" MOTIONKIT_FRONTEND="$lane" "$venv/bin/pytest" -m browser "$@"
        rc=$?
        [ $rc -eq 0 ] || [ $rc -eq 5 ] || status=1  # 5: no browser test among the selected ones
        summary+="$host, frontend $lane: pytest exit $rc in $((SECONDS - start)) s"$'\n'
    done
done
printf '===== summary =====\n%s' "$summary" >&2
exit $status
