#!/usr/bin/env bash
# Set-up and the main job: installs what is missing, builds in release mode and
# maps the bundled microscopy image with the bundled nuclei model (exact dense
# mode), writing prob/labels/overlay/npy to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
swift build -c release
bin=$(swift build -c release --show-bin-path)
"$bin/tessera-coordinator" run \
  --model models/demo/deploy.prototxt --weights models/demo/nuclei32.caffemodel \
  --channel-order bgr --mean 134,151,171 --scale 0.015625 \
  --mode dense --outputs all --out out examples/ihc.png
echo "wrote:"; ls -1 out/ihc.*
