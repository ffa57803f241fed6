#!/usr/bin/env bash
# Prepares .device/ for scripts/device-check.sh on a GPU machine that has no Swift
# toolchain and no internet: both binaries built with the Swift runtime linked in
# (--static-swift-stdlib), stripped, plus the shared libraries they need that such
# a machine may lack (libzmq and its dependencies, libpng), the seed net's
# deploy.prototxt (definition only) for the timing, and the seed's nuclei caffemodel
# (naive on the GPU). The seed files never enter the repository. Everything goes into one
# .device/bundle.tar.xz (the device tool carries at most 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=.build-static
# The two products only: a plain `swift build` also builds TestSupport, which imports
# Testing, a module the static Swift runtime does not have.
for product in tessera-coordinator tessera-worker; do
  swift build -c release --static-swift-stdlib --scratch-path "$scratch" --product "$product"
done
bin=$(swift build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/seed"
for b in tessera-coordinator tessera-worker; do
  cp "$bin/$b" "$stage/bin/" && strip "$stage/bin/$b"
done
# Shared libraries outside glibc/libstdc++ that the binaries (and libzmq) load.
ldd "$bin/tessera-coordinator" /usr/lib/x86_64-linux-gnu/libzmq.so.5 | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -Ev '/(libc|libm|libpthread|libdl|librt|libresolv|libstdc\+\+|libgcc_s)\.so' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
seed=../shared/models/seed/efficient-pixelwise/deploy.prototxt
[[ -f $seed ]] && cp "$seed" "$stage/seed/deploy.prototxt"
# The seed's trained nuclei classifier (a net that pads: GPU naive's timing and check).
nuclei=../shared/models/seed/nuclei-cifar10quick/nuclei_w32.caffemodel
[[ -f $nuclei ]] && cp "$nuclei" "$stage/seed/"
mkdir -p .device
tar -cJf .device/bundle.tar.xz -C "$stage" bin lib seed
ls -l .device/bundle.tar.xz
ls "$stage/lib"
