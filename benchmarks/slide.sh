#!/usr/bin/env bash
# Whole-slide benchmark: generates large sparse pyramidal BigTIFFs (white background,
# a few tissue islands, JPEG tiles; tools/make-large-slide.py), maps each with the
# demo net in `dense` with --tissue into an OME-Zarr pyramid plus a pyramidal TIFF,
# and prints per slide: time, tiles computed/skipped, the share of time spent
# reading and decoding JPEG tiles, peak RSS, and that zarr/ome-zarr/tifffile open
# the outputs. Usage: benchmarks/slide.sh [SIDE ...]   (default: 30000 60000)
set -euo pipefail
cd "$(dirname "$0")/.."
sides=("$@")
((${#sides[@]})) || sides=(30000 60000)
work=${TESSERA_BENCH_DIR:-/tmp/tessera-slide-bench}
mkdir -p "$work"
# TESSERA_BIN: a folder with tessera-coordinator already built (else a release build here).
if [[ -n "${TESSERA_BIN:-}" ]]; then bin=$TESSERA_BIN; else swift build -c release >/dev/null; bin=$(swift build -c release --show-bin-path); fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
for side in "${sides[@]}"; do
  slide="$work/slide-$side.tif"
  [[ -f "$slide" ]] || python3 tools/make-large-slide.py "$slide" "$side" 4
  out="$work/out-$side"
  rm -rf "$out"
  log="$work/run-$side.log"
  /usr/bin/time -v "$bin/tessera-coordinator" run --in-process --tissue --mode dense --threads "$(nproc)" \
    --model models/demo/deploy.prototxt --weights models/demo/nuclei32.caffemodel \
    --mean 134,151,171 --scale 0.015625 --outputs zarr,tiff --dtype uint8 --out "$out" "$slide" >"$log" 2>&1 \
    || { tail -20 "$log"; exit 1; }
  rss=$(grep 'Maximum resident set size' "$log" | awk '{print $NF}')
  wall=$(grep 'Elapsed (wall clock)' "$log" | awk '{print $NF}')
  done_line=$(grep ' done' "$log" | tail -1)
  tissue=$(grep -o 'fraction=[0-9.]*' "$log" | head -1)
  echo "slide ${side}x${side}: wall $wall, peak RSS $((rss / 1024)) MiB, $tissue"
  echo "  $(echo "$done_line" | grep -o 'compute-s=[0-9.]*') $(echo "$done_line" | grep -o 'read-s=[0-9.]*') $(echo "$done_line" | grep -o 'tiles=[^]]*skipped')"
  python3 - "$out" "$side" <<'PY'
import sys, glob, zarr, tifffile
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
out, side = sys.argv[1], int(sys.argv[2])
store = glob.glob(out + "/*.zarr")[0]
z = zarr.open(store, mode="r")
levels = len(z.attrs["multiscales"][0]["datasets"])
nodes = list(Reader(parse_url(store))())
t = tifffile.TiffFile(glob.glob(out + "/*.map.tiff")[0]).series[0]
print(f"  zarr: {levels} levels, level 0 {z['0'].shape}; ome-zarr reader: {len(nodes[0].data)} levels; "
      f"tifffile: {len(t.levels)} levels, {t.shape}")
# What a viewer opens per level: chunk side and chunk files (tissue-free chunks are absent).
import os
files = [sum(len(f) for _, _, f in os.walk(f"{store}/{k}/0")) for k in range(levels)]
print("  zarr chunks per level: " + ", ".join(f"L{k} {z[str(k)].chunks[1]}² ×{files[k]}" for k in range(levels)))
PY
done
