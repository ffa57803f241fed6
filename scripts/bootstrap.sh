#!/usr/bin/env bash
# Installs the Debian packages Tessera needs when they are missing; with --test,
# also the Python packages the tests use as references (PyPI zarr, ome-zarr,
# tifffile, imagecodecs; openslide-python over the system OpenSlide; onnx and
# onnxruntime). Idempotent: does nothing (and needs no root) when everything is there.
set -euo pipefail

packages=(libzmq3-dev libopenblas-dev libpng-dev libtiff-dev libopenslide-dev zlib1g-dev libblosc-dev pkg-config)
if [[ "${1:-}" == "--test" ]]; then packages+=(libtiff-tools python3 python3-pip); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: missing Debian packages: ${missing[*]}" >&2
    echo "bootstrap: run as root, or install them first: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
  echo "bootstrap: no Swift toolchain on PATH (Swift 6.x is needed: https://www.swift.org/install)" >&2
  exit 1
fi

# The tests' reference readers: the versions SLIDE-FACTS were checked with.
if [[ "${1:-}" == "--test" ]]; then
  python_packages=(numpy tifffile==2026.3.3 imagecodecs==2026.3.6 zarr==3.1.6 numcodecs==0.16.6 ome-zarr==0.18.0
    openslide-python==1.4.7 onnx==1.23.2 onnxruntime==1.32.0)
  if ! python3 -c "import numpy, tifffile, imagecodecs, zarr, ome_zarr, openslide, onnx, onnxruntime" 2>/dev/null; then
    echo "bootstrap: installing Python packages ${python_packages[*]}"
    python3 -m pip install --quiet --disable-pip-version-check "${python_packages[@]}" \
      || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${python_packages[@]}"
  fi
fi
