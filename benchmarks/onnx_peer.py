#!/usr/bin/env python3
"""The peer for benchmarks/engine.sh: the seed network of the blog post
(../shared/models/seed/efficient-pixelwise) in its exact dense form -- every
layer after a stride dilated, stride 1 -- run by onnxruntime on a padded
image, so that it computes the same H x W map as Tessera's `dense` mode.

Prints one JSON object: seconds (best and median), peak RSS, threads.
Weights are random (the trained ones are not published); the work is the same.
"""
import argparse
import json
import resource
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def dense_seed_net(rng):
    nodes, inits = [], []

    def weight(name, shape):
        fan_in = int(np.prod(shape[1:]))
        w = (rng.random(shape, dtype=np.float32) * 2 - 1) * (1.7 / np.sqrt(fan_in))
        inits.append(numpy_helper.from_array(w.astype(np.float32), name))
        inits.append(numpy_helper.from_array((rng.random(shape[0], dtype=np.float32) * 0.2 - 0.1), name + "_b"))

    def conv(x, name, cin, cout, k, dilation):
        weight(name + "_w", (cout, cin, k, k))
        nodes.append(helper.make_node("Conv", [x, name + "_w", name + "_w_b"], [name], kernel_shape=[k, k],
                                      dilations=[dilation, dilation], strides=[1, 1]))
        return name

    def op(kind, x, name, **attrs):
        nodes.append(helper.make_node(kind, [x], [name], **attrs))
        return name

    x = conv("data", "conv1", 3, 32, 3, 1)
    x = op("Relu", x, "relu1")
    x = op("LRN", x, "norm1", size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = op("MaxPool", x, "pool1", kernel_shape=[4, 4], strides=[1, 1], dilations=[1, 1])
    x = conv(x, "conv2", 32, 32, 3, 2)
    x = op("Relu", x, "relu2")
    x = op("LRN", x, "norm2", size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = op("MaxPool", x, "pool2", kernel_shape=[2, 2], strides=[1, 1], dilations=[2, 2])
    x = conv(x, "fc6", 32, 64, 6, 4)
    x = op("Relu", x, "relu6")
    x = conv(x, "fc7", 64, 64, 1, 4)
    x = op("Relu", x, "relu7")
    x = conv(x, "fc8", 64, 2, 1, 4)
    x = op("Softmax", x, "prob", axis=1)
    graph = helper.make_graph(
        nodes, "seed-dense",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 2, None, None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=2000, help="map side in pixels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(42)
    model = dense_seed_net(rng)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    receptive_field = 32
    side = args.size + receptive_field - 1  # padded input giving exactly size x size outputs
    image = (rng.random((1, 3, side, side), dtype=np.float32) * 2 - 1)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = session.run(None, {"data": image})[0]
        times.append(time.perf_counter() - start)
    assert out.shape == (1, 2, args.size, args.size), out.shape
    print(json.dumps({
        "peer": f"onnxruntime {ort.__version__}", "size": args.size, "threads": args.threads,
        "best": min(times), "median": statistics.median(times),
        "peakRSSMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
