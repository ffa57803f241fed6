#!/usr/bin/env bash
# Peak memory of writing outputs from a 2-class SIZE×SIZE float map (default
# 16000: a 2 GB map). Runs the test suite's memory probe in its own process:
# "extra" is the peak resident memory above what the process held before
# each write (the map), in bytes. Usage: benchmarks/png-memory.sh [SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
size="${1:-16000}"
scratch="${SCRATCH_PATH:-.build-image}"
swift build --scratch-path "$scratch" -c release -Xswiftc -enable-testing --build-tests >/dev/null
bin="$(swift build --scratch-path "$scratch" -c release --show-bin-path)"
result="$(mktemp)"
trap 'rm -f "$result"' EXIT
TESSERA_PNG_MEMORY_PROBE="$size:$result" "$bin/TesseraPackageTests.xctest" \
    --testing-library swift-testing --filter ImageMemoryTests >/dev/null
echo "outputs of a 2×${size}×${size} float32 map:"
cat "$result"
