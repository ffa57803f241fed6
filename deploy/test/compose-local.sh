#!/usr/bin/env bash
# Runs the exact commands of deploy/compose.yaml (coordinator, 2 workers, demo) as
# local processes and checks the demo's outputs: proof that the compose file
# describes a working cluster, without a Docker engine.
#
#   deploy/test/compose-local.sh            (after `swift build -c release`)
#   TESSERA_BIN=/path/to/bin deploy/test/compose-local.sh
#
# Only container-specific values are mapped: the host `coordinator` -> 127.0.0.1,
# /opt/tessera/ -> the repository, /var/lib/tessera and /out -> a scratch folder,
# ${TESSERA_WORKER_THREADS:-2} -> 2. As root it runs in a private network namespace
# (unshare -n), so the fixed ports 5555/5556 cannot collide with anything.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ $(id -u) -eq 0 && -z "${TESSERA_IN_NETNS:-}" ]] && command -v unshare >/dev/null; then
  TESSERA_IN_NETNS=1 exec unshare -n "$0" "$@"
fi
[[ -n "${TESSERA_IN_NETNS:-}" ]] && ip link set lo up

BIN="${TESSERA_BIN:-$(swift build -c release --show-bin-path)}"
SCRATCH=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait; rm -rf "$SCRATCH"; }
trap cleanup EXIT

# The command of a compose service, one argument a line, values mapped as above.
command_of() {
  python3 - "$1" "$SCRATCH" <<'PY'
import sys, yaml
service, scratch = sys.argv[1], sys.argv[2]
args = yaml.safe_load(open("deploy/compose.yaml"))["services"][service]["command"]
for a in args[1:]:  # args[0] is the entrypoint role (coordinator | worker)
    a = a.replace("tcp://coordinator:", "tcp://127.0.0.1:").replace("/opt/tessera/", "./")
    a = a.replace("${TESSERA_WORKER_THREADS:-2}", "2")
    a = a.replace("/var/lib/tessera", scratch + "/store")
    if a == "/out": a = scratch + "/out"
    print(a)
PY
}

mapfile -t COORDINATOR < <(command_of coordinator)
mapfile -t WORKER < <(command_of worker)
mapfile -t DEMO < <(command_of demo)

"$BIN/tessera-coordinator" "${COORDINATOR[@]}" >"$SCRATCH/coordinator.log" 2>&1 & PIDS+=($!)
for i in 1 2; do "$BIN/tessera-worker" "${WORKER[@]}" >"$SCRATCH/worker$i.log" 2>&1 & PIDS+=($!); done
# The compose health check: the coordinator answers status.
for _ in $(seq 50); do
  "$BIN/tessera-coordinator" status --coordinator tcp://127.0.0.1:5556 >/dev/null 2>&1 && break
  sleep 0.2
done

timeout 600 "$BIN/tessera-coordinator" "${DEMO[@]}"
for f in ihc.npy ihc.labels.png ihc.overlay.png ihc.prob-1.png; do
  [[ -s "$SCRATCH/out/$f" ]] || { echo "compose-local: $f missing" >&2; cat "$SCRATCH"/*.log >&2; exit 1; }
done
"$BIN/tessera-coordinator" status --coordinator tcp://127.0.0.1:5556
echo "compose-local: OK (the compose commands ran the demo on 2 workers)"
