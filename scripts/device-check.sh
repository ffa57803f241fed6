#!/usr/bin/env bash
# GPU acceptance checks (issue #10) on a machine with an NVIDIA GPU, no Swift
# toolchain and no internet. Prepare on the build machine with
# scripts/device-bundle.sh (writes .device/bundle.tar.xz), copy the repository
# with .device/ to the GPU machine, run this from anywhere. Every step runs even
# when an earlier one failed; logs and results go to $OUT (default /tmp/device-check),
# a summary to stdout. Exit status: number of failed steps.
#
# Steps, most important first (issue 20's acceptance, then the rest): gpu-check (fixtures,
# demo, determinism, seed-net timing vs the CPU engine, naive of the seed's padded nuclei
# net), the same with dilated convolutions through fragments, the PyTorch fp32 peer and the
# ratio, a worker's sustained throughput with one and two pipelines and `cuda:all`
# (benchmarks/pipelines.sh), the same with transfers overlapping compute, naive at other batch sizes, per-layer profiles, the other
# PyTorch precisions, tf32, the im2col + cuBLAS path, cuDNN 'find' algorithms, and a
# coordinator with one CUDA and one CPU worker (tiles compared byte for byte).
#
# BUDGET (seconds, default 480) bounds the whole run: a step gets at most what is left,
# a step that cannot start with 20 s left is skipped, and the summary is always printed
# (a lent GPU session has 15 minutes of device time in all). SIZE (default 2000) is the
# side of the timed images; TILE and GRID pass to benchmarks/pipelines.sh. A dry run of
# the script's logic on the emulated GPU of the tests (Tests/EmulatedCUDA, see
# scripts/device-dry-run.sh) uses small ones.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
D=.device
if [[ -f $D/bundle.tar.xz && ! -x $D/bin/tessera-coordinator ]]; then tar -xJf $D/bundle.tar.xz -C $D; fi
B=${TESSERA_BIN_DIR:-$D/bin}  # the binaries (a dry run points at a release build)
ORIGINAL_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}  # PyTorch must find its own cuDNN, not the system's
export LD_LIBRARY_PATH="$PWD/$D/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cudnn=$(find /usr /opt -name 'libcudnn.so.9' 2>/dev/null | head -1)
cudadirs=/usr/local/cuda/lib64${cudnn:+:$(dirname "$cudnn")}
export TESSERA_CUDA_LIBRARY_PATH=${TESSERA_CUDA_LIBRARY_PATH:+$TESSERA_CUDA_LIBRARY_PATH:}$cudadirs
export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$cudadirs"
PY=python3
for p in /opt/torch/.venv/bin/python python3; do
  if $p -c 'import torch' 2>/dev/null; then PY=$p; break; fi
done
SEED=$D/seed/deploy.prototxt
[[ -f $SEED ]] || SEED=../shared/models/seed/efficient-pixelwise/deploy.prototxt
NUCLEI=$D/seed/nuclei_w32.caffemodel  # the seed's trained nuclei net (pads): naive
[[ -f $NUCLEI ]] || NUCLEI=../shared/models/seed/nuclei-cifar10quick/nuclei_w32.caffemodel
NAIVE=()
[[ -f $NUCLEI ]] && NAIVE=(--naive-model "$NUCLEI")
DEMO=(--model models/demo/deploy.prototxt --weights models/demo/nuclei32.caffemodel
      --channel-order bgr --mean 134,151,171 --scale 0.015625)
BUDGET=${BUDGET:-480}
SIZE=${SIZE:-2000}  # the timed image's side (issue 20's figures are at 2000)
CHECKS=(${DEMO_CROP:+--demo-crop "$DEMO_CROP"})  # gpu-check's demo image: all of it unless DEMO_CROP
failed=0
skipped=()
step() {  # step NAME TIMEOUT COMMAND...
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - SECONDS))
  if ((left < 20)); then skipped+=("$name"); echo "=== $name: skipped (budget)"; return; fi
  ((limit > left)) && limit=$left
  echo "=== $name"
  local t0=$SECONDS
  local rc
  if declare -F "$1" >/dev/null; then  # a function: in a subshell, stopped (with its children) at the limit
    ("$@") >"$OUT/$name.log" 2>&1 &
    local pid=$! waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < limit)); do sleep 1; waited=$((waited + 1)); done
    if kill -0 "$pid" 2>/dev/null; then
      pkill -TERM -P "$pid"; kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rc=124
    else
      wait "$pid"; rc=$?
    fi
  else
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; rc=$?
  fi
  tail -n 40 "$OUT/$name.log"
  echo "=== $name: exit $rc, $((SECONDS - t0)) s"
  [[ $rc -eq 0 ]] || failed=$((failed + 1))
}

# The dense fp32 ratio to the PyTorch peer, from the logs written so far.
ratios() {
  $PY - "$OUT" "$SIZE" <<'PY'
import json, re, sys
out, size = sys.argv[1], sys.argv[2]
try:
    peer = json.loads(open(f"{out}/torch-fp32.log").read().strip().splitlines()[-1])
except Exception as e:
    sys.exit(f"no peer result: {e}")
for name in ("gpu-check", "gpu-check-fragments"):
    try:
        m = re.search(r"dense\s+GPU best ([0-9.]+) s", open(f"{out}/{name}.log").read())
    except OSError:
        m = None
    if m:
        ours = float(m.group(1))
        print(f"dense {size}x{size} fp32 ({name}): Tessera {ours*1000:.1f} ms, PyTorch {peer['best']*1000:.1f} ms "
              f"(device only {peer['deviceOnlyBest']*1000:.1f} ms): ratio {ours/peer['best']:.2f}")
PY
}
TORCH=0
$PY -c 'import torch' 2>/dev/null && TORCH=1
torch() {  # torch PRECISION: the PyTorch peer on the seed's dense net (gpu-check exported it)
  [[ $TORCH == 1 && -f $OUT/dense-net.json ]] || { echo "no PyTorch or no exported net"; return 1; }
  env LD_LIBRARY_PATH="$ORIGINAL_LD_LIBRARY_PATH" $PY benchmarks/torch_peer.py "$OUT/dense-net.json" --precision "$1"
}

# A CPU coordinator with one CUDA worker and one CPU worker; the same tiles in-process
# on each device: every tile of the mixed map must equal one of them byte for byte.
mixed() {
  local dir=$OUT/mixed
  rm -rf "$dir"; mkdir -p "$dir"
  $B/tessera-coordinator serve --worker-endpoint tcp://127.0.0.1:5555 --client-endpoint tcp://127.0.0.1:5556 \
    --store "$dir/store" >"$dir/coordinator.log" 2>&1 & local c=$!
  $B/tessera-worker --coordinator tcp://127.0.0.1:5555 --device cuda --name gpu-worker >"$dir/gpu-worker.log" 2>&1 &
  local g=$!
  $B/tessera-worker --coordinator tcp://127.0.0.1:5555 --device cpu --threads 4 --name cpu-worker \
    >"$dir/cpu-worker.log" 2>&1 & local w=$!
  sleep 2
  timeout 240 $B/tessera-coordinator submit --coordinator tcp://127.0.0.1:5556 "${DEMO[@]}" --mode dense --tile 48 \
    --outputs npy --wait --out "$dir/mixed" examples/ihc.png
  local rc=$?
  timeout 20 $B/tessera-coordinator status --coordinator tcp://127.0.0.1:5556
  kill $g $w; sleep 1; kill $c; wait
  timeout 120 $B/tessera-coordinator run --in-process --device cpu "${DEMO[@]}" --mode dense --tile 48 --outputs npy \
    --out "$dir/cpu" examples/ihc.png || rc=1
  timeout 120 $B/tessera-coordinator run --in-process --device cuda "${DEMO[@]}" --mode dense --tile 48 --outputs npy \
    --out "$dir/gpu" examples/ihc.png || rc=1
  timeout 120 $B/tessera-coordinator run --device cuda "${DEMO[@]}" --mode dense --outputs npy \
    --out "$dir/embedded" examples/ihc.png || rc=1
  $PY - "$dir" <<'PY' || rc=1
import sys, numpy as np
d = sys.argv[1]
mixed, cpu, gpu = (np.load(f"{d}/{k}/ihc.npy") for k in ("mixed", "cpu", "gpu"))
emb = np.load(f"{d}/embedded/ihc.npy")
t = 48
kinds = {"cpu": 0, "gpu": 0, "neither": 0}
for y in range(0, mixed.shape[1], t):
    for x in range(0, mixed.shape[2], t):
        m = mixed[:, y:y+t, x:x+t]
        if m.tobytes() == cpu[:, y:y+t, x:x+t].tobytes(): kinds["cpu"] += 1
        elif m.tobytes() == gpu[:, y:y+t, x:x+t].tobytes(): kinds["gpu"] += 1
        else: kinds["neither"] += 1
diff = float(np.abs(mixed - cpu).max())
print(f"mixed job tiles: {kinds}; max |mixed - cpu| = {diff:.3g}; "
      f"max |gpu - cpu| = {float(np.abs(gpu - cpu).max()):.3g}; "
      f"max |embedded gpu run - cpu| = {float(np.abs(emb - cpu).max()):.3g}")
ok = kinds["neither"] == 0 and kinds["cpu"] > 0 and kinds["gpu"] > 0 and diff <= 1e-4
print("PASS" if ok else "FAIL", "mixed CPU+GPU cluster")
sys.exit(0 if ok else 1)
PY
  return $rc
}
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv | tee "$OUT/gpu.txt"
echo "cuDNN: ${cudnn:-not found}; python: $PY; torch: $TORCH; budget ${BUDGET} s"
step info 60 $B/tessera-coordinator info
step gpu-check 300 $B/tessera-coordinator gpu-check --device cuda ${CHECKS[@]+"${CHECKS[@]}"} --seed-model "$SEED" --size "$SIZE" --repeats 10 \
  --export-dense "$OUT/dense-net.json" ${NAIVE[@]+"${NAIVE[@]}"}
# Dilated convolutions as batched undilated ones over fragments (space-to-batch,
# FragmentGeometry; issue 20): the same numerics and determinism checks (the seed's maps
# against the CPU engine too).
step gpu-check-fragments 150 env TESSERA_CUDA_DILATED=fragments $B/tessera-coordinator gpu-check --device cuda ${CHECKS[@]+"${CHECKS[@]}"} \
  --seed-model "$SEED" --size "$SIZE" --repeats 10
step torch-fp32 90 torch fp32
ratios
# Sustained throughput of one worker process over 49 tiles of 1024² (shared storage: region
# reads, transfers and chunk writes included) against the engine alone, with one pipeline,
# two pipelines on GPU 0, and one per GPU (issue 20).
step pipelines 180 env TESSERA_BIN=$B MODEL="$SEED" PYTHON=$PY benchmarks/pipelines.sh cuda:0 cuda:0,cuda:0 cuda:all
# Transfers on each pipeline's own stream, overlapping the other pipeline's compute
# (TransferLane, TESSERA_CUDA_OVERLAP=1; off by default until this has passed and been timed).
step gpu-check-overlap 120 env TESSERA_CUDA_OVERLAP=1 $B/tessera-coordinator gpu-check --device cuda ${CHECKS[@]+"${CHECKS[@]}"} \
  --seed-model "$SEED" --size "$SIZE" --no-cpu-timing --repeats 10
step pipelines-overlap 120 env TESSERA_CUDA_OVERLAP=1 TESSERA_BIN=$B MODEL="$SEED" PYTHON=$PY \
  benchmarks/pipelines.sh cuda:0 cuda:0,cuda:0
# naive of the padded nuclei net (issue 20: 2000×2000 in at most 20 s; gpu-check timed the
# default batch of 2048): one 2000² task at two other batch sizes, then the default 64² tiles.
if [[ -f $NUCLEI ]]; then
  for b in 512 8192; do
    step "naive-batch-$b" 60 env TESSERA_CUDA_NAIVE_BATCH=$b $B/tessera-coordinator benchmark --device cuda \
      --weights "$NUCLEI" --modes naive --size "$SIZE" --naive-crop "$SIZE" --tile "$SIZE"
  done
fi
step profile-fragments 60 env TESSERA_CUDA_PROFILE=1 TESSERA_CUDA_DILATED=fragments $B/tessera-coordinator benchmark \
  --device cuda --model "$SEED" --size "$SIZE" --modes dense --repeats 2
step profile 60 env TESSERA_CUDA_PROFILE=1 TESSERA_CUDNN_ALGO=find $B/tessera-coordinator benchmark --device cuda \
  --model "$SEED" --size "$SIZE" --modes dense --repeats 2
[[ -f $NUCLEI ]] && step profile-naive 60 env TESSERA_CUDA_PROFILE=1 $B/tessera-coordinator benchmark --device cuda \
  --weights "$NUCLEI" --modes naive --size $((SIZE < 256 ? SIZE : 256)) --naive-crop 256 --tile 256
step torch-tf32 90 torch tf32
step torch-bf16 90 torch bf16
step benchmark-tf32 60 $B/tessera-coordinator benchmark --device cuda --precision tf32 --model "$SEED" --size "$SIZE" --repeats 5
step gpu-check-gemm 120 env TESSERA_CUDA_CONV=gemm $B/tessera-coordinator gpu-check --device cuda ${CHECKS[@]+"${CHECKS[@]}"} \
  --seed-model "$SEED" --size "$SIZE" --no-cpu-timing
step gpu-check-find 120 env TESSERA_CUDNN_ALGO=find $B/tessera-coordinator gpu-check --device cuda ${CHECKS[@]+"${CHECKS[@]}"} \
  --seed-model "$SEED" --size "$SIZE" --no-cpu-timing --repeats 10
[[ -f $NUCLEI ]] && step naive-tiles 90 $B/tessera-coordinator benchmark --device cuda --weights "$NUCLEI" \
  --modes naive --size "$SIZE" --naive-crop "$SIZE"
step mixed-cluster 150 mixed
TESSERA_CUDNN_ALGO=find step mixed-cluster-find 150 mixed
echo "=== summary"
ratios
for f in "$OUT"/gpu-check*.log; do
  [[ -f $f ]] && { echo "-- $(basename "$f" .log)"; grep -h -E "^FAIL|GPU best|naive  GPU|checks passed|FAILED" "$f"; }
done
grep -h -A6 "^devices" "$OUT"/pipelines*.log 2>/dev/null
for f in "$OUT"/naive-*.log; do
  [[ -f $f ]] && echo "$(basename "$f" .log): $(grep -m1 '^naive ' "$f")"
done
((${#skipped[@]})) && echo "skipped for the budget: ${skipped[*]}"
echo "device-check: $failed step(s) failed; logs in $OUT"
exit $failed
