#!/usr/bin/env bash
# Engine benchmark (issue 4): the seed network on a SIZE x SIZE image in fast,
# shift and dense, against this machine's sgemm peak and, where onnxruntime can
# be installed from PyPI, against onnxruntime running the same dense net.
# Everything in one run, because this machine is shared and noisy.
#   benchmarks/engine.sh [--avx2] [--seed-only] [SIZE] [THREADS]
# It ends with naive on the seed's padded nuclei net (timed on a crop): its GFLOP/s
# and share of the same run's sgemm peak, by wall clock and per CPU-second.
# Peak RSS is per mode: the process's resident high-water mark (VmHWM) while that
# mode ran, restarted before each mode (see `tessera-coordinator benchmark --help`).
#
# --avx2 (or TESSERA_EMULATE_AVX2=1): an AVX2 machine emulated on an AVX-512 one, for
#   the issue's "on both AVX2 and AVX-512 machines" when no AVX2-only machine is at hand:
#   OPENBLAS_CORETYPE=Haswell (and TESSERA_BLAS_CORETYPE=Haswell: OpenBLAS's AVX2 sgemm,
#   so the peak is the AVX2 one), TESSERA_DIRECT_CONV=avx2 (Tessera's only AVX-512 code is
#   the direct convolution kernel, which every convolution, the fused head and batched
#   naive use), and GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,... (glibc's memcpy/memset and
#   libm pick their AVX2 versions). The script checks that the process reports the Haswell
#   kernel and the avx2 direct kernel, and prints that the run is emulated, on which CPU.
#   The onnxruntime peer cannot be told: its MLAS kernels still use AVX-512.
# --seed-only: stop after the seed net and its onnxruntime peer (skip naive and fcn-batchnorm).
set -euo pipefail
cd "$(dirname "$0")/.."
avx2=${TESSERA_EMULATE_AVX2:-0}
seed_only=0
while [[ ${1:-} == --* ]]; do
  case $1 in
    --avx2) avx2=1 ;;
    --seed-only) seed_only=1 ;;
    *) echo "unknown option $1 (usage: benchmarks/engine.sh [--avx2] [--seed-only] [SIZE] [THREADS])" >&2; exit 2 ;;
  esac
  shift
done
size=${1:-2000}
threads=${2:-$(nproc)}
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
if [[ $avx2 == 1 ]]; then
  export OPENBLAS_CORETYPE=Haswell TESSERA_BLAS_CORETYPE=Haswell TESSERA_DIRECT_CONV=avx2
  export GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD
fi
model=../shared/models/seed/efficient-pixelwise/deploy.prototxt
[[ -f $model ]] || { echo "needs $model (the seed models beside the repository)" >&2; exit 1; }
scripts/bootstrap.sh
# Only the product it runs: `swift build -c release` also builds TestSupport, whose
# @testable imports fail outside a build with -enable-testing.
# SWIFT_BUILD_FLAGS (e.g. "--scratch-path .build-x -Xswiftc -enable-testing") reuses an
# existing build instead of making another in .build.
read -ra flags <<<"${SWIFT_BUILD_FLAGS:-}"
swift build -c release "${flags[@]}" --product tessera-coordinator >/dev/null
bin=$(swift build -c release "${flags[@]}" --show-bin-path)
echo "== $(date -u +%Y-%m-%dT%H:%MZ) on $cpu, $(nproc) cores"
if [[ $avx2 == 1 ]]; then
  avx512=$(grep -qw avx512f /proc/cpuinfo && echo "has AVX-512F, masked" || echo "has no AVX-512F anyway")
  echo "== EMULATED AVX2 RUN on $cpu ($avx512): OpenBLAS $OPENBLAS_CORETYPE kernel, TESSERA_DIRECT_CONV=avx2,"
  echo "   GLIBC_TUNABLES=$GLIBC_TUNABLES; the onnxruntime peer keeps its AVX-512 kernels"
fi
"$bin/tessera-coordinator" benchmark --model "$model" --size "$size" --threads "$threads" --modes fast,shift,dense \
  --json > /tmp/tessera-bench.json
if [[ $avx2 == 1 ]]; then
  python3 - <<'PY'
import json, sys
b = json.load(open("/tmp/tessera-bench.json"))
if b["blasKernel"] != "Haswell" or b["directConvolution"] != "avx2":
    sys.exit(f"emulated AVX2 run, but the process used BLAS kernel {b['blasKernel']} and direct "
             f"convolution {b['directConvolution']}: not an AVX2 run")
PY
fi
python3 - <<'PY'
import json
b = json.load(open("/tmp/tessera-bench.json"))
print(f"sgemm peak {b['sgemmPeakGflops']:.1f} GFLOP/s ({b['threads']} threads, kernel {b['blasKernel']}); "
      f"direct convolution: {b.get('directConvolution', '?')}")
print(f"sgemm per CPU-second: {b.get('sgemmPeakGflopPerCPUSecond', float('nan')):.1f} GFLOP")
emulated = b["blasKernel"] == "Haswell" and b.get("directConvolution") == "avx2" and " avx512f" in open("/proc/cpuinfo").read()
print(f"CPU {b['cpuModel']}" + (" (EMULATED AVX2 run: AVX-512 masked)" if emulated else ""))
print(f"{'mode':6} {'seconds':>8} {'GMAC':>7} {'GFLOP/s':>8} {'of peak':>8} {'GFLOP/CPU-s':>12} {'of peak':>8} {'peak RSS':>9}")
for r in b["modes"]:
    per_cpu = r.get("gflopPerCPUSecond", float("nan")); of_cpu = r.get("fractionOfPeakPerCPUSecond", float("nan"))
    print(f"{r['mode']:6} {r['seconds']:8.2f} {r['gmacs']:7.1f} {r['gflops']:8.1f} {100*r['fractionOfPeak']:7.0f}% "
          f"{per_cpu:12.1f} {100*of_cpu:7.0f}% {r['peakRSSMiB']:6.0f} MiB")
scope = "each mode its own" if all(r.get("peakRSSScope") == "mode" for r in b["modes"]) else "the process's so far"
print(f"peak RSS: {scope}; whole process {b.get('processPeakRSSMiB', float('nan')):.0f} MiB")
if "denseSpeedupOverShift" in b:
    s, m = b["denseSpeedupOverShift"], b["shiftToDenseMACRatio"]
    print(f"dense over shift: {s:.2f}x (MAC ratio {m:.2f}x; {100*s/m:.0f}% of it)")
PY
if python3 -c 'import onnxruntime, onnx' 2>/dev/null || pip install -q onnxruntime onnx >/dev/null 2>&1; then
  python3 benchmarks/onnx_peer.py --size "$size" --threads "$threads" > /tmp/tessera-peer.json
  python3 - <<'PY'
import json
b = json.load(open("/tmp/tessera-bench.json")); p = json.load(open("/tmp/tessera-peer.json"))
dense = next(r for r in b["modes"] if r["mode"] == "dense")
print(f"peer {p['peer']}: best {p['best']:.2f} s, median {p['median']:.2f} s, peak RSS {p['peakRSSMiB']:.0f} MiB")
print(f"Tessera dense / onnxruntime best: {dense['seconds'] / p['best']:.2f}x")
PY
else
  echo "onnxruntime not installable here: peer row skipped"
fi
if [[ $seed_only == 1 ]]; then exit 0; fi
# naive of the seed's padded nuclei net (the only exact map of a net that pads):
# timed on a 128² crop, extrapolated per pixel to SIZE², against the sgemm peak
# measured in the same process, by wall clock and by CPU time.
nuclei=../shared/models/seed/nuclei-cifar10quick/nuclei_w32.caffemodel
if [[ -f $nuclei ]]; then
  "$bin/tessera-coordinator" benchmark --weights "$nuclei" --size "$size" --threads "$threads" --modes naive \
    --naive-crop 128 --json > /tmp/tessera-naive.json
  python3 - <<'PY'
import json
b = json.load(open("/tmp/tessera-naive.json")); r = b["modes"][0]
side = b["image"]
print(f"naive, nuclei-cifar10quick (pads): {side}x{side} extrapolated from a {r['measuredSide']}² crop, "
      f"{b['threads']} threads, {b['cpuModel']}, direct convolution {b['directConvolution']}")
print(f"  {r['seconds']:.0f} s ({r['seconds'] / 60:.1f} min), {r['gflops']:.1f} GFLOP/s = "
      f"{100 * r['fractionOfPeak']:.0f}% of this run's sgemm peak ({b['sgemmPeakGflops']:.1f} GFLOP/s)")
if "gflopPerCPUSecond" in r:
    print(f"  CPU time {r['cpuSeconds']:.0f} s: {r['gflopPerCPUSecond']:.1f} GFLOP per CPU-second = "
          f"{100 * r['fractionOfPeakPerCPUSecond']:.0f}% of sgemm's {b['sgemmPeakGflopPerCPUSecond']:.1f}")
PY
fi
# The seed's trained fcn-batchnorm (strided 2x2/2, 3x3/2, 4x4/2 convolutions, BatchNorm):
# fast, shift and dense against the sgemm peak measured in the same process; then fast
# again with TESSERA_DIRECT_CONV=0 (every convolution through im2col + sgemm, as strided
# ones ran before the direct kernels took strides), for the ratio in one run.
fcn=../shared/models/seed/fcn-batchnorm
if [[ -f $fcn/full_convolutional_net.caffemodel ]]; then
  fcn_args=(--model "$fcn/deploy_full.prototxt" --weights "$fcn/full_convolutional_net.caffemodel"
            --size "$size" --threads "$threads" --json)
  "$bin/tessera-coordinator" benchmark "${fcn_args[@]}" --modes fast,shift,dense > /tmp/tessera-fcn.json
  TESSERA_DIRECT_CONV=0 "$bin/tessera-coordinator" benchmark "${fcn_args[@]}" --modes fast --repeats 3 \
    > /tmp/tessera-fcn-im2col.json
  "$bin/tessera-coordinator" benchmark "${fcn_args[@]}" --modes fast --repeats 3 > /tmp/tessera-fcn-fast.json
  python3 - <<'PY'
import json
b = json.load(open("/tmp/tessera-fcn.json"))
print(f"fcn-batchnorm (strided), {b['image']}x{b['image']}, {b['threads']} threads, {b['cpuModel']}, "
      f"direct convolution {b['directConvolution']}; sgemm peak {b['sgemmPeakGflops']:.1f} GFLOP/s, "
      f"{b['sgemmPeakGflopPerCPUSecond']:.1f} per CPU-second")
for r in b["modes"]:
    print(f"  {r['mode']:6} {r['seconds']:7.2f} s {r['gflops']:7.1f} GFLOP/s = {100*r['fractionOfPeak']:3.0f}% of peak, "
          f"{r['gflopPerCPUSecond']:6.1f} GFLOP/CPU-s = {100*r['fractionOfPeakPerCPUSecond']:3.0f}%, "
          f"peak RSS {r['peakRSSMiB']:.0f} MiB")
d = json.load(open("/tmp/tessera-fcn-fast.json"))["modes"][0]
i = json.load(open("/tmp/tessera-fcn-im2col.json"))["modes"][0]
print(f"  fast, best of 3: direct {d['seconds']:.3f} s against im2col + sgemm {i['seconds']:.3f} s: "
      f"{i['seconds'] / d['seconds']:.2f}x")
PY
fi
