#!/usr/bin/env bash
# Regenerates Sources/Shared/Model/Caffe/caffe.pb.swift from caffe.proto and
# Sources/Shared/Model/ONNX/onnx.pb.swift from onnx.proto (the official ONNX schema, as the
# PyPI `onnx` 1.23 package ships it: python3 -c "import onnx, os; print(os.path.dirname(onnx.__file__))").
# Run by hand after editing the .proto; CI never runs it (the generated file is committed).
#
# Needs `protoc` on PATH and the swift-protobuf plugin of the version Package.swift pins.
# Give the plugin with PROTOC_GEN_SWIFT=/path/to/protoc-gen-swift, or let this script build it:
#   git clone --branch 1.39.0 --depth 1 https://github.com/apple/swift-protobuf "$WORK"
#   swift build -c release --package-path "$WORK" --product protoc-gen-swift
# (it does exactly that in a temporary folder when PROTOC_GEN_SWIFT is unset).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/Sources/Shared/Model/Caffe"
version="${SWIFT_PROTOBUF_VERSION:-1.39.0}"

plugin="${PROTOC_GEN_SWIFT:-}"
if [[ -z "$plugin" ]]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    git clone --quiet --branch "$version" --depth 1 https://github.com/apple/swift-protobuf "$work/swift-protobuf"
    swift build -c release --package-path "$work/swift-protobuf" --product protoc-gen-swift
    plugin="$work/swift-protobuf/.build/release/protoc-gen-swift"
fi

for proto in "$dir/caffe.proto" "$root/Sources/Shared/Model/ONNX/onnx.proto"; do
    folder="$(dirname "$proto")"
    protoc \
        --plugin=protoc-gen-swift="$plugin" \
        --proto_path="$folder" \
        --swift_out="$folder" \
        --swift_opt=Visibility=Internal \
        "$proto"
    echo "wrote ${proto%.proto}.pb.swift"
done
