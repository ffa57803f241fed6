#!/usr/bin/env bash
# Distributed benchmark (issue 6):
#  (a) `run` on a 2000×2000 image with the seed net in dense: embedded coordinator + 1 local
#      worker vs --in-process, wall time of each and their ratio (must be within 15%);
#  (b) throughput of 1, 2 and 4 workers, each with --threads 1, in tasks/s.
# Usage: benchmarks/distributed.sh [image side, default 2000]
set -euo pipefail
cd "$(dirname "$0")/.."
SIDE=${1:-2000}
SCRATCH=${SCRATCH:-.build-dist}
NET=${NET:-../shared/models/seed/efficient-pixelwise/deploy.prototxt}
swift build -c release --scratch-path "$SCRATCH" >/dev/null
BIN=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

python3 - "$TMP/image.png" "$SIDE" <<'PY'
import sys, zlib, struct, random
path, side = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
raw = b"".join(b"\x00" + bytes(rng.getrandbits(8) for _ in range(side * 3)) for _ in range(side))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")
open(path, "wb").write(png)
PY

COMMON=(--model "$NET" --random-weights 42 --allow-padding --mean 104,117,123 --outputs npy)
seconds() { local s e; s=$(date +%s.%N); "$@" 2>"$TMP/err.log" >/dev/null || { cat "$TMP/err.log"; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }

echo "== (a) run, ${SIDE}x${SIDE}, dense, seed net, $(nproc) cores"
T_IN=$(seconds "$BIN/tessera-coordinator" run "${COMMON[@]}" --mode dense --in-process --out "$TMP/in" "$TMP/image.png")
T_EMB=$(seconds "$BIN/tessera-coordinator" run "${COMMON[@]}" --mode dense --workers 1 --out "$TMP/emb" "$TMP/image.png")
cmp "$TMP/in/image.npy" "$TMP/emb/image.npy" && echo "outputs byte-identical"
printf "in-process %.2f s, embedded (1 worker) %.2f s, ratio %.3f\n" "$T_IN" "$T_EMB" "$(echo "$T_EMB / $T_IN" | bc -l)"

echo "== (b) throughput, dense mode, --threads 1 per worker"
TILE=${TILE:-256}
for N in 1 2 4; do
  T=$(seconds "$BIN/tessera-coordinator" run "${COMMON[@]}" --mode dense --tile "$TILE" --workers "$N" --threads 1 \
      --out "$TMP/w$N" "$TMP/image.png")
  TASKS=$(( ((SIDE + TILE - 1) / TILE) * ((SIDE + TILE - 1) / TILE) ))
  printf "%d worker(s): %d tasks in %.2f s = %.2f tasks/s\n" "$N" "$TASKS" "$T" "$(echo "$TASKS / $T" | bc -l)"
done
