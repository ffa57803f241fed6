#!/usr/bin/env bash
# A worker's sustained throughput (issue 20): one coordinator, one worker process with
# the given --device list, a shared-storage `dense` job of about 50 tiles (region reads,
# compute, transfers and chunk writes all included; the image a tiled TIFF, as slides
# are), against the engine alone on one
# tile of the same size in the same run (`benchmark --size T --tile T`, best of 3). Each --device list is one
# run: "cuda:0" against "cuda:0,cuda:0" (two pipelines on one GPU) and "cuda:all"
# (every GPU) is the multi-GPU scaling check; "cpu" against "cpu,cpu" runs the same
# logic on any machine.
#
# Usage: benchmarks/pipelines.sh DEVICES...     (e.g. cuda:0 cuda:0,cuda:0 cuda:all)
# Env:   TESSERA_BIN (release binaries), MODEL (prototxt; random weights; default the
#        bundled demo net), TILE (default 1024), GRID (tiles per side, default 7: 49
#        tiles), THREADS (CPU threads per pipeline, default all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
(($#)) || set -- cpu cpu,cpu
model=${MODEL:-models/demo/deploy.prototxt}
tile=${TILE:-1024}
grid=${GRID:-7}
threads=${THREADS:-$(nproc)}
work=${TESSERA_BENCH_DIR:-/tmp/tessera-pipelines-bench}
rm -rf "$work" && mkdir -p "$work/shared"
if [[ -n "${TESSERA_BIN:-}" ]]; then bin=$TESSERA_BIN; else swift build -c release >/dev/null; bin=$(swift build -c release --show-bin-path); fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name --format=csv,noheader | sed 's/^/GPU /'
side=$((tile * grid))
image=$work/shared/image.tif
# A tiled, uncompressed RGB TIFF of random pixels, Python's standard library only (the GPU
# machine may lack imaging packages): workers read their regions tile by tile, as from a slide.
${PYTHON:-python3} - "$image" "$side" <<'PY'
import os, struct, sys
path, side, t = sys.argv[1], int(sys.argv[2]), 512
across = (side + t - 1) // t
count = across * across
tags = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2),
        (277, 3, 1, 3), (284, 3, 1, 1), (322, 3, 1, t), (323, 3, 1, t), (324, 4, count, None), (325, 4, count, None)]
ifd_at = 8
extra_at = ifd_at + 2 + 12 * len(tags) + 4
bits_at, offsets_at = extra_at, extra_at + 6
counts_at = offsets_at + 4 * count
data_at = counts_at + 4 * count
size = t * t * 3
with open(path, "wb") as f:
    f.write(b"II*\0" + struct.pack("<I", ifd_at) + struct.pack("<H", len(tags)))
    for tag, kind, n, value in tags:
        if tag == 258: value = bits_at
        if tag == 324: value = offsets_at
        if tag == 325: value = counts_at
        f.write(struct.pack("<HHI", tag, kind, n) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)))
    f.write(struct.pack("<I", 0) + struct.pack("<3H", 8, 8, 8))
    f.write(struct.pack(f"<{count}I", *(data_at + i * size for i in range(count))))
    f.write(struct.pack(f"<{count}I", *([size] * count)))
    for _ in range(count):
        f.write(os.urandom(size))
PY
cp examples/ihc.png "$work/shared/warm.png"
net=(--model "$model" --random-weights 7 --mode dense)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

printf '%-24s %9s %7s %9s %9s %s\n' devices pipelines tiles wall-s Mpx/s "vs engine alone"
base=""
for devices in "$@"; do
  first=${devices%%,*}
  [[ $first == cuda:all ]] && first=cuda:0  # the engine alone runs on one device
  # The engine alone on one tile of this size on the list's first device (best of 3).
  engine=$("$bin/tessera-coordinator" benchmark --model "$model" --device "$first" --threads "$threads" \
    --size "$tile" --tile "$tile" --modes dense --repeats 3 2>&1 | awk '$1 == "dense" { print $2 }')
  ready=$work/ready
  rm -f "$ready"
  "$bin/tessera-coordinator" serve --worker-endpoint 'tcp://127.0.0.1:*' --client-endpoint 'tcp://127.0.0.1:*' \
    --store "$work/store" --shared-root "$work/shared" --ready-file "$ready" >"$work/coordinator.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 100); do [[ -s $ready && $(wc -l <"$ready") -ge 2 ]] && break; sleep 0.1; done
  "$bin/tessera-worker" --coordinator "$(sed -n 1p "$ready")" --device "$devices" --threads "$threads" --name box \
    --shared-root "$work/shared" --log-level warning >"$work/worker.log" 2>&1 &
  pids+=("$!")
  pipelines=$(tr ',' '\n' <<<"$devices" | wc -l)
  # Every pipeline registered, and the model cached on each, before the measured job.
  for _ in $(seq 300); do
    (($(grep -c 'worker joined' "$work/coordinator.log") >= pipelines)) && break
    sleep 0.1
  done
  pipelines=$(grep -c 'worker joined' "$work/coordinator.log")
  # 16 small tiles: every pipeline gets some, so each has its engine built before the measured job.
  "$bin/tessera-coordinator" submit --coordinator "$(sed -n 2p "$ready")" "${net[@]}" --tile 128 --shared \
    --wait --out "$work/shared/warm" "$work/shared/warm.png" >/dev/null 2>&1
  "$bin/tessera-coordinator" submit --coordinator "$(sed -n 2p "$ready")" "${net[@]}" --tile "$tile" --shared \
    --wait --out "$work/shared/out" "$image" >"$work/submit.log" 2>&1 || { tail -5 "$work/submit.log"; exit 1; }
  line=$(grep 'job finished' "$work/coordinator.log" | tail -1)
  secs=$(grep -o ' seconds=[0-9.]*' <<<"$line" | cut -d= -f2)
  tasks=$(grep -o ' tasks=[0-9]*' <<<"$line" | cut -d= -f2)
  python3 - "$devices" "$pipelines" "$tasks" "$secs" "$side" "$tile" "${engine:-0}" "${base:-0}" <<'PY'
import sys
devices, pipelines, tasks, secs, side, tile, engine, base = sys.argv[1:]
secs, side, tile, engine, base = float(secs), int(side), int(tile), float(engine), float(base)
mpx = side * side / 1e6 / secs
vs = f"{mpx / (tile * tile / 1e6 / engine):.2f} of one engine ({engine * 1000:.0f} ms/tile)" if engine > 0 else "?"
if base > 0: vs += f"; {mpx / base:.2f}x the first list"
print(f"{devices:<24} {pipelines:>9} {tasks:>7} {secs:>9.2f} {mpx:>9.1f} {vs}")
PY
  [[ -z $base ]] && base=$(python3 -c "print($side * $side / 1e6 / $secs)")
  cleanup; pids=()
  rm -rf "$work/store" "$work/shared/out" "$work/shared/warm"
done
echo "wall-s: the coordinator's job time (first task sent to last receipt), with region reads, transfers and"
echo "chunk writes; vs engine alone: the job's Mpx/s over one tile's compute rate on the first device of the list."
