#!/usr/bin/env bash
# scripts/device-check.sh on the tests' emulated GPU (Tests/EmulatedCUDA: libcuda, NVRTC,
# cuDNN and cuBLAS on the CPU, two devices), with small sizes: checks the script's logic
# (steps, budget, parsing, summary) and every command it runs before a lent GPU's scarce
# minutes are spent on it. The timings it prints mean nothing. Needs a release build
# (swift build -c release) and a C compiler; PyTorch steps fail without PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=$(mktemp -d)
trap 'rm -rf "$lib"' EXIT
cc -O3 -shared -fPIC -o "$lib/libemulatedcuda.so" Tests/EmulatedCUDA/emulated_cuda.c -ldl
for name in libcuda.so.1 libnvrtc.so libcudnn.so.9 libcublas.so; do ln -s libemulatedcuda.so "$lib/$name"; done
export TESSERA_CUDA_LIBRARY_PATH=$lib TESSERA_EMULATED_GPUS=2
export TESSERA_BIN_DIR=${TESSERA_BIN_DIR:-$(swift build -c release --show-bin-path)}
# naive in batches of 64: on the emulated GPU a batch of 2048 nuclei patches takes many seconds.
export TESSERA_CUDA_NAIVE_BATCH=${TESSERA_CUDA_NAIVE_BATCH:-64}
export DEMO_CROP=${DEMO_CROP:-48} SIZE=${SIZE:-64} TILE=${TILE:-64} GRID=${GRID:-2} BUDGET=${BUDGET:-900} OUT=${OUT:-/tmp/device-dry-run}
exec scripts/device-check.sh
