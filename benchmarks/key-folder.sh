#!/usr/bin/env bash
# `status` latency of a CURVE coordinator whose --authorized-keys folder holds many keys (CURVE audit 30 F12:
# the folder was read whole, under a lock, by whichever handshake or request found it older than 2 s).
# Prints the latency of each `status` with 1 key, then with KEYS keys, once with GAP_IDLE seconds between
# requests (the list is stale at each: the request reads changed files itself) and once with GAP_BUSY (a
# coordinator with traffic: the list is refreshed in the background).
#
# Usage: benchmarks/key-folder.sh [KEYS]      (default 20000)
# Env:   TESSERA_BIN (a folder with release binaries), PORT (client port; the worker port is PORT-1),
#        GAP_IDLE (default 2.1), GAP_BUSY (default 0.7)
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-20000}
if [[ -n "${TESSERA_BIN:-}" ]]; then bin=$TESSERA_BIN; else swift build -c release >/dev/null; bin=$(swift build -c release --show-bin-path); fi
port=${PORT:-47302}
work=$(mktemp -d /tmp/tessera-key-bench.XXXXXX)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC'); $("$bin/tessera-coordinator" --version)"
mkdir -p "$work/authorized" "$work/workers"
for n in coordinator alice w1; do "$bin/tessera-coordinator" keygen "$n" --out "$work/$n" >/dev/null; done
cp "$work/alice/alice.pub" "$work/authorized/"; cp "$work/w1/w1.pub" "$work/workers/"
"$bin/tessera-coordinator" serve --worker-endpoint "tcp://127.0.0.1:$((port - 1))" --client-endpoint "tcp://127.0.0.1:$port" \
  --store "$work/store" --curve --curve-secret-key "$work/coordinator/coordinator.key" \
  --authorized-keys "$work/authorized" --worker-keys "$work/workers" > "$work/coordinator.log" 2>&1 &
pid=$!
sleep 2
latencies() {
  for _ in 1 2 3 4 5 6; do
    local t0; t0=$(date +%s%N)
    "$bin/tessera-coordinator" status --coordinator "tcp://127.0.0.1:$port" --curve \
      --curve-secret-key "$work/alice/alice.key" --curve-server-key "$work/coordinator/coordinator.pub" >/dev/null
    echo -n "$(( ($(date +%s%N) - t0) / 1000000 )) ms  "
    sleep "$1"
  done
  echo
}
echo -n "1 key, ${GAP_IDLE:-2.1} s apart:      "; latencies "${GAP_IDLE:-2.1}"
python3 - "$work/authorized" "$keys" <<'PY'
import os, sys
Z = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
def z85(b):
    out = ""
    for i in range(0, len(b), 4):
        v = int.from_bytes(b[i:i + 4], "big"); s = ""
        for _ in range(5): s = Z[v % 85] + s; v //= 85
        out += s
    return out
for i in range(int(sys.argv[2])):
    with open(os.path.join(sys.argv[1], "u%05d.pub" % i), "w") as f:
        f.write("public-key = \"%s\"\n" % z85(os.urandom(32)))
PY
sleep 2.1
echo -n "$keys keys, ${GAP_IDLE:-2.1} s apart:  "; latencies "${GAP_IDLE:-2.1}"
echo -n "$keys keys, ${GAP_BUSY:-0.7} s apart:  "; latencies "${GAP_BUSY:-0.7}"
