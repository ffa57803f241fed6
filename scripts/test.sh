#!/usr/bin/env bash
# The whole test suite: installs what is missing, then builds and runs every test.
# Tests are built in release mode (with -enable-testing for @testable imports):
# the engine's numeric tests are 10-100x slower in a debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
swift test -c release -Xswiftc -enable-testing "$@"
