#!/usr/bin/env bash
# Set-up and the main job: installs what is missing, builds in release mode and
# runs Tessera on the bundled demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
swift build -c release
bin=$(swift build -c release --show-bin-path)
"$bin/tessera-coordinator" info
"$bin/tessera-coordinator" --help
