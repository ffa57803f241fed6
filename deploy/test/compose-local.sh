#!/usr/bin/env bash
# Runs the exact commands and environments of deploy/compose.yaml (keys, coordinator,
# 2 workers, demo) as local processes and checks the demo's outputs, that the demo's
# user key is refused as a worker, and the admin role: the coordinator's own key (the
# `docker compose exec coordinator … status` of deploy/README.md) sees no job lines,
# an operator key added to keys/admin-keys sees the demo's job with its owner. Proof
# that the compose file describes a working cluster, CURVE keys and roles included,
# without a Docker engine.
#
#   deploy/test/compose-local.sh            (after `swift build -c release`)
#   TESSERA_BIN=/path/to/bin deploy/test/compose-local.sh
#
# As root, each service runs in its own network namespace, like a container: the
# coordinator, the two workers and the demo client each get an address on a private
# bridge and reach each other through it, and the name `coordinator` resolves to the
# coordinator's address (/etc/netns/NAME/hosts), so the commands run exactly as written.
# The bridge itself lives in a namespace of its own (unshare -n): nothing touches the
# host's network. Without root (or without `ip netns`) everything runs on loopback,
# with the host `coordinator` mapped to 127.0.0.1.
# Other container-specific values are mapped: /opt/tessera/ -> the repository, every
# mounted path (volumes and ./keys folders) -> a scratch folder,
# ${TESSERA_WORKER_THREADS:-2} -> 2, and $$ -> $ in the keys script.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ $(id -u) -eq 0 && -z "${TESSERA_IN_NETNS:-}" ]] && command -v unshare >/dev/null \
   && ip netns list >/dev/null 2>&1; then
  TESSERA_IN_NETNS=1 exec unshare -n "$0" "$@"
fi
NETNS=()
if [[ -n "${TESSERA_IN_NETNS:-}" ]]; then
  ip link set lo up
  ip link add tessera-br type bridge
  ip addr add 10.77.0.254/24 dev tessera-br
  ip link set tessera-br up
  tag=$$
  # One namespace per container: NAME ADDRESS
  for spec in coordinator:1 worker1:11 worker2:12 demo:20; do
    name=${spec%%:*} host=${spec##*:} ns="tessera-$tag-${spec%%:*}"
    ip netns add "$ns"
    NETNS+=("$ns")
    ip link add "v$tag$host" type veth peer name eth0 netns "$ns"
    ip link set "v$tag$host" master tessera-br up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "10.77.0.$host/24" dev eth0
    ip -n "$ns" link set eth0 up
    mkdir -p "/etc/netns/$ns"
    printf '127.0.0.1 localhost\n10.77.0.1 coordinator\n10.77.0.%s %s\n' "$host" "$name" >"/etc/netns/$ns/hosts"
  done
fi
# Runs a command in a service's namespace (directly, without namespaces).
in_service() {
  local name=$1; shift
  if [[ ${#NETNS[@]} -gt 0 ]]; then ip netns exec "tessera-$tag-$name" "$@"; else "$@"; fi
}
# Starts a service in the background, output to LOG. `ip netns exec` and `env` exec the
# program, so the PID kept for cleanup is the service's own (not a subshell's).
start_service() {
  local name=$1 log=$2; shift 2
  if [[ ${#NETNS[@]} -gt 0 ]]; then
    ip netns exec "tessera-$tag-$name" "$@" >"$log" 2>&1 &
  else
    "$@" >"$log" 2>&1 &
  fi
  PIDS+=($!)
}

BIN="${TESSERA_BIN:-$(swift build -c release --show-bin-path)}"
SCRATCH=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait
  rm -rf "$SCRATCH"
  for ns in "${NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns"; done
}
trap cleanup EXIT

# A compose service as local settings: `env NAME=VALUE` lines, then `arg VALUE` lines
# (the command without its entrypoint role), values mapped as above.
service() {
  python3 - "$1" "$SCRATCH" "$([[ ${#NETNS[@]} -gt 0 ]] && echo 0 || echo 1)" <<'PY'
import re, sys, yaml
name, scratch, loopback = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
svc = yaml.safe_load(open("deploy/compose.yaml"))["services"][name]
paths = {}
for v in svc.get("volumes", []):
    source, target = v.split(":")[:2]
    host = scratch + "/" + (source[2:] if source.startswith("./") else source)
    paths[target] = host
def mapped(a):
    a = str(a).replace("/opt/tessera/", "./")
    if loopback:
        a = a.replace("tcp://coordinator:", "tcp://127.0.0.1:")
    a = a.replace("${TESSERA_WORKER_THREADS:-2}", "2").replace("$$", "$")
    for target in sorted(paths, key=len, reverse=True):
        # The mounted path as a word or the start of one (also inside the keys script).
        a = re.sub(r"(?<![^\s\"'=])" + re.escape(target) + r"(?=$|[/\s\"'])", paths[target], a)
    return a
for k, v in (svc.get("environment") or {}).items():
    # On one loopback, the services' metrics ports would collide: only in namespaces.
    if loopback and k.endswith("METRICS_ADDRESS"):
        continue
    print(f"env {k}={mapped(v)}")
command = svc["command"]
for a in (command if "entrypoint" in svc else command[1:]):  # command[0]: the role
    print("arg " + mapped(a).replace("\n", "\\n"))
PY
}

# Loads a service into ENV and ARGS.
load() {
  ENV=(); ARGS=()
  while IFS= read -r line; do
    case "$line" in
      env\ *) ENV+=("${line#env }") ;;
      arg\ *) ARGS+=("${line#arg }") ;;
    esac
  done < <(service "$1")
}
load keys; ARGS_keys=("${ARGS[@]}")
load coordinator; ENV_coordinator=("${ENV[@]}"); ARGS_coordinator=("${ARGS[@]}")
load worker; ENV_worker=("${ENV[@]}"); ARGS_worker=("${ARGS[@]}")
load demo; ENV_demo=("${ENV[@]}"); ARGS_demo=("${ARGS[@]}")
mkdir -p "$SCRATCH/keys" "$SCRATCH/store" "$SCRATCH/demo-out"

# keys: its shell script, with this build's tessera-coordinator on the PATH (chown needs root).
script=$(printf '%b' "${ARGS_keys[0]}")
# shellcheck disable=SC2001  # a per-line edit
[[ $(id -u) -eq 0 ]] || script=$(sed 's/^ *chown .*/true/' <<<"$script")
(cd "$SCRATCH/keys" && PATH="$BIN:$PATH" sh -c "$script") >"$SCRATCH/keys.log" 2>&1 \
  || { echo "compose-local: the keys service failed" >&2; cat "$SCRATCH/keys.log" >&2; exit 1; }

start_service coordinator "$SCRATCH/coordinator.log" \
  env "${ENV_coordinator[@]}" "$BIN/tessera-coordinator" "${ARGS_coordinator[@]}"
for i in 1 2; do
  start_service "worker$i" "$SCRATCH/worker$i.log" env "${ENV_worker[@]}" "$BIN/tessera-worker" "${ARGS_worker[@]}"
done
# Ready: a status request answered with the coordinator's environment (what the health check
# does with metrics off; compose's runs the entrypoint's `healthcheck`, an HTTP probe with them on).
for _ in $(seq 50); do
  in_service coordinator env "${ENV_coordinator[@]}" "$BIN/tessera-coordinator" status >/dev/null 2>&1 && break
  sleep 0.2
done

demo_ns=(); [[ ${#NETNS[@]} -gt 0 ]] && demo_ns=(ip netns exec "tessera-$tag-demo")
timeout 600 "${demo_ns[@]}" env "${ENV_demo[@]}" "$BIN/tessera-coordinator" "${ARGS_demo[@]}" \
  || { echo "compose-local: the demo failed" >&2; cat "$SCRATCH"/*.log >&2; exit 1; }
for f in ihc.npy ihc.labels.png ihc.overlay.png ihc.prob-1.png; do
  [[ -s "$SCRATCH/demo-out/$f" ]] || { echo "compose-local: $f missing" >&2; cat "$SCRATCH"/*.log >&2; exit 1; }
done
in_service coordinator env "${ENV_coordinator[@]}" "$BIN/tessera-coordinator" status | tee "$SCRATCH/status.txt"
grep -q "curve=on" "$SCRATCH/coordinator.log" || { echo "compose-local: the coordinator did not use CURVE" >&2; exit 1; }
# Roles (TESSERA_WORKER_KEYS): the demo's user key is refused as a worker.
client_key=$(printf '%s\n' "${ENV_demo[@]}" | sed -n 's/^TESSERA_CLIENT_CURVE_SECRET_KEY=//p')
in_service demo env "${ENV_worker[@]}" TESSERA_WORKER_CURVE_SECRET_KEY="$client_key" \
  timeout 5 "$BIN/tessera-worker" "${ARGS_worker[@]}" >"$SCRATCH/user-as-worker.log" 2>&1 || true
grep -qi "refused" "$SCRATCH/user-as-worker.log" \
  || { echo "compose-local: a user key was not refused as a worker" >&2; cat "$SCRATCH/user-as-worker.log" >&2; exit 1; }
# Admins (TESSERA_ADMIN_KEYS): the coordinator's own key is a plain client key (no job
# lines for the demo's job); an operator key put into the (empty) admin-keys folder is
# let in within the folder's 2 s re-read and sees the demo's job with its owner.
! grep -q "^job " "$SCRATCH/status.txt" \
  || { echo "compose-local: the coordinator's key listed another key's job" >&2; exit 1; }
admin_dir=$(printf '%s\n' "${ENV_coordinator[@]}" | sed -n 's/^TESSERA_ADMIN_KEYS=//p')
[[ -d $admin_dir ]] || { echo "compose-local: no admin-keys folder ($admin_dir)" >&2; exit 1; }
"$BIN/tessera-coordinator" keygen operator --out "$SCRATCH/operator" >/dev/null
cp "$SCRATCH/operator/operator.pub" "$admin_dir/"
sleep 3
in_service demo env "${ENV_demo[@]}" TESSERA_CLIENT_CURVE_SECRET_KEY="$SCRATCH/operator/operator.key" \
  "$BIN/tessera-coordinator" status >"$SCRATCH/admin-status.txt" 2>&1 || true
grep -q "^job .*\[client\]" "$SCRATCH/admin-status.txt" \
  || { echo "compose-local: an admin key did not see the demo's job" >&2; cat "$SCRATCH/admin-status.txt" >&2; exit 1; }
if [[ ${#NETNS[@]} -gt 0 ]]; then
  # Each worker reached the coordinator from its own address, not loopback.
  for i in 1 2; do
    in_service coordinator ss -tn | grep -q "10.77.0.1$i:" \
      || { echo "compose-local: no sign of worker$i connecting from 10.77.0.1$i" >&2; exit 1; }
  done
  # The compose health checks with metrics on: the entrypoint's HTTP probe in each service.
  probe=(sh deploy/docker/entrypoint.sh probe)
  metrics_of() { local kv; for kv in "$@"; do [[ $kv == *METRICS_ADDRESS=* ]] && echo "${kv#*=}"; done; true; }
  in_service coordinator "${probe[@]}" "$(metrics_of "${ENV_coordinator[@]}")" /readyz \
    || { echo "compose-local: the coordinator's /readyz did not answer 200" >&2; exit 1; }
  for i in 1 2; do
    in_service "worker$i" "${probe[@]}" "$(metrics_of "${ENV_worker[@]}")" /healthz \
      || { echo "compose-local: worker$i's /healthz did not answer 200" >&2; exit 1; }
  done
  where="4 network namespaces on a private bridge, health probes answered"
else
  where="loopback"
fi
echo "compose-local: OK (the compose commands ran the demo on 2 CURVE-authenticated workers, a user key was refused as a worker, an admin key saw the demo's job, $where)"
