#!/usr/bin/env bash
# Upload-mode coordinator cost (issue 17): the CPU one coordinator spends on an
# upload job, per Mpx, against the first round's 6.2 Mpx/s per core (2.65 s for the
# demo net's 4096² `dense` job with `--outputs npy`, one 2-thread worker, model cached).
# One `serve`, one worker, a warm-up job (so the model is cached), then each measured
# job; the coordinator's CPU for a job is read from its /proc counters before and
# after (every thread: the socket loop, upload, store and output queues, ZMQ's I/O).
#
# Usage: benchmarks/upload.sh [SIDE] [RUNS]      (default 4096, 3)
# Env:   TESSERA_BIN (a folder with release binaries); NETS="demo tiny" (demo: the
#        bundled demo net at its default tile; tiny: benchmarks/nets/tiny.prototxt with
#        random weights at tile 1024, a multiple of the chunk grid, compute negligible).
set -euo pipefail
cd "$(dirname "$0")/.."
side=${1:-4096}
runs=${2:-3}
work=${TESSERA_BENCH_DIR:-/tmp/tessera-upload-bench}
rm -rf "$work" && mkdir -p "$work"
if [[ -n "${TESSERA_BIN:-}" ]]; then bin=$TESSERA_BIN; else swift build -c release >/dev/null; bin=$(swift build -c release --show-bin-path); fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
python3 - "$work/image.png" "$side" <<'PY'
import sys, numpy as np
from PIL import Image
side = int(sys.argv[2])
Image.fromarray(np.random.default_rng(7).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(sys.argv[1])
PY
ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
for net in ${NETS:-demo tiny}; do
  case $net in
    demo) model=(--model models/demo/deploy.prototxt --weights models/demo/nuclei32.caffemodel --channel-order bgr
                 --mean 134,151,171 --scale 0.015625 --mode dense) ;;
    tiny) model=(--model benchmarks/nets/tiny.prototxt --random-weights 7 --mode dense --tile 1024) ;;
    *) echo "unknown net $net" >&2; exit 2 ;;
  esac
  w=$work/$net; mkdir -p "$w"
  "$bin/tessera-coordinator" serve --worker-endpoint 'tcp://127.0.0.1:*' --client-endpoint 'tcp://127.0.0.1:*' \
    --store "$w/store" --ready-file "$w/ready" >"$w/coord.log" 2>&1 &
  coord=$!
  for _ in $(seq 200); do [[ -s $w/ready && $(wc -l <"$w/ready") -ge 2 ]] && break; sleep 0.1; done
  [[ $(wc -l <"$w/ready" 2>/dev/null) -ge 2 ]] || { echo "the coordinator did not start:" >&2; cat "$w/coord.log" >&2; exit 1; }
  "$bin/tessera-worker" --coordinator "$(sed -n 1p "$w/ready")" --threads 2 --log-level warning >"$w/worker.log" 2>&1 &
  worker=$!
  submit=("$bin/tessera-coordinator" submit --coordinator "$(sed -n 2p "$w/ready")" "${model[@]}" --outputs npy --wait)
  "${submit[@]}" --out "$w/warm" examples/ihc.png >/dev/null 2>&1
  for r in $(seq "$runs"); do
    before=$(cpu $coord); start=$(date +%s.%N)
    "${submit[@]}" --out "$w/out$r" "$work/image.png" >/dev/null 2>&1
    sleep 0.3  # the job's last files are removed just after the client is answered
    after=$(cpu $coord); end=$(date +%s.%N)
    python3 - "$net" "$side" "$before" "$after" "$start" "$end" <<'PY'
import sys
net, side, before, after, start, end = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
cpu, mpx = after - before, side * side / 1e6
print(f"{net:5} {side}² upload, npy: coordinator CPU {cpu:.2f} s = {mpx / cpu:.1f} Mpx/s per core "
      f"({mpx / cpu / 6.2:.1f}x the first round's 6.2), wall {end - start - 0.3:.1f} s")
PY
    rm -rf "$w/out$r"
  done
  kill $worker $coord; wait $worker $coord 2>/dev/null || true
done
