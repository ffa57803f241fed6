#!/usr/bin/env bash
# Coordinator scaling: one `serve` (durable store) and N worker processes on a shared
# folder, mapping a generated image with a tiny real net (benchmarks/nets/tiny.prototxt,
# random weights), so compute is negligible and what is measured is the coordinator
# and the data path. For each N and each job kind it prints tasks/s, the coordinator's
# scheduling-thread CPU per task and per Gpx, bytes through the coordinator per task
# and per Gpx, and how many H100-rate workers (90 Mpx/s each, the seed net's dense
# rate) one coordinator core could feed at that CPU cost.
#
# Two jobs per N and kind: a PNG of SIDE² in SMALL_TILE tiles (many small tasks: the
# scheduling rate), and, shared-storage only, a sparse JPEG BigTIFF slide of SLIDE²
# (about a Gpx) in BIG_TILE tiles (the cost per Gpx at a realistic tile size).
#
# Usage: benchmarks/scale.sh [N ...]            (default: 1 2 4 8 16)
# Env:   TESSERA_BIN (a folder with the release binaries), SIDE (default 2048),
#        SMALL_TILE (default 64), SLIDE (default 32768; 0 skips it), BIG_TILE (default 1024),
#        UPLOAD=0 to skip upload jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
((${#counts[@]})) || counts=(1 2 4 8 16)
side=${SIDE:-2048}
slide_side=${SLIDE:-32768}
small=${SMALL_TILE:-64}
big=${BIG_TILE:-1024}
work=${TESSERA_BENCH_DIR:-/tmp/tessera-scale-bench}
rm -rf "$work" && mkdir -p "$work/shared"
if [[ -n "${TESSERA_BIN:-}" ]]; then bin=$TESSERA_BIN; else swift build -c release >/dev/null; bin=$(swift build -c release --show-bin-path); fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
image="$work/shared/image.png"
python3 - "$image" "$side" <<'PY'
import sys, numpy as np, imagecodecs
side = int(sys.argv[2])
a = np.random.default_rng(7).integers(0, 256, (side, side, 3), dtype=np.uint8)
open(sys.argv[1], "wb").write(imagecodecs.png_encode(a))
PY
slide="$work/shared/slide.tif"
((slide_side > 0)) && python3 tools/make-large-slide.py "$slide" "$slide_side" 4
model=(--model benchmarks/nets/tiny.prototxt --random-weights 7 --mode dense)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The coordinator's cumulative counters from its last "job finished" line.
finished() { grep 'job finished' "$work/coordinator.log" | tail -1; }
field() { grep -o "$1=[0-9.]*" <<<"$2" | head -1 | cut -d= -f2; }

printf '%-7s %3s %6s %6s %7s %8s %13s %14s %11s %8s %10s %7s\n' kind N tile tasks wall tasks/s "loop-µs/task" "tasks/s/core" "loop-s/Gpx" "B/task" "MB/Gpx" "H100s"
for n in "${counts[@]}"; do
  ready="$work/ready-$n"
  "$bin/tessera-coordinator" serve --worker-endpoint 'tcp://127.0.0.1:*' --client-endpoint 'tcp://127.0.0.1:*' \
    --store "$work/store-$n" --shared-root "$work/shared" --credit 4 --ready-file "$ready" \
    >"$work/coordinator.log" 2>&1 &
  coord=$!
  pids+=("$coord")
  for _ in $(seq 100); do [[ -s "$ready" && $(wc -l <"$ready") -ge 2 ]] && break; sleep 0.1; done
  wep=$(sed -n 1p "$ready"); cep=$(sed -n 2p "$ready")
  for i in $(seq "$n"); do
    "$bin/tessera-worker" --coordinator "$wep" --threads 1 --name "w$i" --shared-root "$work/shared" \
      --log-level warning >"$work/worker-$n-$i.log" 2>&1 &
    pids+=("$!")
  done
  sleep 1
  prev_cpu=0; prev_in=0; prev_out=0
  kinds=(shared)
  [[ "${UPLOAD:-1}" == 1 ]] && kinds+=(upload)
  runs=("shared $small $image")
  ((slide_side > 0)) && runs+=("shared $big $slide")
  [[ "${UPLOAD:-1}" == 1 ]] && runs+=("upload $small $image")
  for run in "${runs[@]}"; do
    read -r kind tile input <<<"$run"
    {
      out="$work/shared/out-$n-$kind-$tile"
      if [[ $kind == shared ]]; then extra=(--shared); else extra=(--outputs npy); fi
      start=$(date +%s.%N)
      "$bin/tessera-coordinator" submit --coordinator "$cep" "${model[@]}" --tile "$tile" --wait \
        --out "$out" "${extra[@]}" "$input" >"$work/submit.log" 2>&1 || { tail -5 "$work/submit.log"; tail -5 "$work/coordinator.log"; exit 1; }
      line=$(finished)
      secs=$(field seconds "$line"); tasks=$(field tasks "$line")
      cpu=$(field loop-cpu-s "$line"); bin_=$(field worker-bytes-in "$line"); bout=$(field worker-bytes-out "$line")
      px=$(python3 -c "import sys; print(${slide_side} ** 2 if '$input' == '$slide' else ${side} ** 2)")
      python3 - "$kind" "$n" "$tile" "$tasks" "$secs" "$cpu" "$prev_cpu" "$bin_" "$prev_in" "$bout" "$prev_out" "$px" <<'PY'
import sys
kind, n, tile, tasks, secs, cpu, pcpu, bi, pbi, bo, pbo, px = sys.argv[1:]
tasks, secs = int(tasks), float(secs)
cpu = float(cpu) - float(pcpu)
nbytes = (int(bi) - int(pbi)) + (int(bo) - int(pbo))
gpx = int(px) / 1e9
per_gpx = cpu / gpx
feeds = 1000 / per_gpx / 90 if per_gpx > 0 else float("inf")  # Mpx/s one core schedules, over 90 Mpx/s
print(f"{kind:<7} {n:>3} {tile:>6} {tasks:>6} {secs:>6.1f}s {tasks / secs:>8.0f} {cpu / tasks * 1e6:>13.0f} "
      f"{tasks / cpu:>14.0f} {per_gpx:>11.3f} {nbytes / tasks:>8.0f} {nbytes / gpx / 1e6:>10.1f} {feeds:>7.0f}")
PY
      prev_cpu=$cpu; prev_in=$bin_; prev_out=$bout
      rm -rf "$out"
    }
  done
  cleanup; pids=()
done
echo "loop-µs/task, loop-s/Gpx: CPU of the coordinator's scheduling thread (getrusage RUSAGE_THREAD) per task and"
echo "per 10^9 map pixels, job set-up included; tasks/s/core: tasks one core schedules and completes at that cost;"
echo "B/task, MB/Gpx: bytes it received from and sent to workers (model included); H100s: workers at 90 Mpx/s"
echo "one coordinator core could feed at that CPU cost. tasks/s and wall are bound by the workers on a small box."
