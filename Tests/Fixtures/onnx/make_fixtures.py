#!/usr/bin/env python3
"""ONNX reference fixtures: small patch classifiers built with onnx.helper (no torch),
fixed random weights, and the outputs onnxruntime computes for them.

    python3 Tests/Fixtures/onnx/make_fixtures.py      # needs onnx (1.23) and onnxruntime
    python3 Tests/Fixtures/onnx/make_fixtures.py zero_pad float16_model   # only these

Deterministic (fixed seeds): a re-run rewrites identical bytes. One folder per net:

    model.onnx              the classifier (batch dimension dynamic, "N")
    model.onnx.data         (seed_net only) its weights as ONNX external data
    manifest.json           patch size, classes, preprocessing, exactness, what it covers
    patches.f32             float32 [8, C, P, P] preprocessed patches
    patches_probs.f32       float32 [8, K] onnxruntime's outputs for them
    image.u8                uint8 [H, W, 3] an RGB image
    map.f32                 float32 [K, H, W] the naive map: onnxruntime on every pixel's
                            mirror-padded patch (docs/ARCHITECTURE.md §1)
    deploy.prototxt, weights.caffemodel
                            (seed_net only) the same net and weights as Caffe files

Arrays are raw little-endian, C order, no header.
"""

import json
import os
import shutil
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.abspath(__file__))
F = TensorProto.FLOAT


# ---------------------------------------------------------------------------
# Building graphs
# ---------------------------------------------------------------------------


class Graph:
    def __init__(self, name, channels, patch, seed):
        self.name = name
        self.channels = channels
        self.patch = patch
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.count = 0
        self.covers = []
        # exp of the model's output is the reference (a LogSoftmax head, imported as Softmax).
        self.log_output = False
        self.tolerance = 1e-4
        # More graph outputs after the one Tessera maps (the first).
        self.extra_outputs = []

    def fresh(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, name, arr, dtype=np.float32, raw=True):
        arr = np.asarray(arr)
        if dtype == np.float16:
            t = numpy_helper.from_array(arr.astype(np.float16), name + "_fp16")
            self.inits.append(t)
            self.nodes.append(helper.make_node("Cast", [name + "_fp16"], [name], name=name + "_cast", to=F))
            return name
        if raw:
            t = numpy_helper.from_array(arr.astype(dtype), name)
        else:
            t = helper.make_tensor(name, F, arr.shape, arr.astype(np.float32).ravel().tolist(), raw=False)
        self.inits.append(t)
        return name

    def weights(self, shape, fan_in, gain=2.0):
        return (self.rng.standard_normal(shape) * np.sqrt(gain / fan_in)).astype(np.float32)

    def node(self, op, inputs, name=None, **attrs):
        name = name or self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv(self, x, cin, cout, k, group=1, bias=True, dtype=np.float32, name=None, **attrs):
        name = name or self.fresh("conv")
        w = self.const(name + ".weight", self.weights((cout, cin // group, k, k), cin // group * k * k), dtype)
        ins = [x, w]
        if bias:
            ins.append(self.const(name + ".bias", self.rng.uniform(-0.2, 0.2, cout), dtype))
        return self.node("Conv", ins, name=name, group=group, **attrs)

    def bn(self, x, c, raw=True, name=None):
        name = name or self.fresh("bn")
        r = self.rng
        ins = [
            x,
            self.const(name + ".weight", r.uniform(0.5, 1.5, c), raw=raw),
            self.const(name + ".bias", r.uniform(-0.3, 0.3, c), raw=raw),
            self.const(name + ".running_mean", r.uniform(-0.5, 0.5, c), raw=raw),
            self.const(name + ".running_var", r.uniform(0.5, 2.0, c), raw=raw),
        ]
        return self.node("BatchNormalization", ins, name=name, epsilon=1e-3)

    def gemm(self, x, k, n, trans_b=1, alpha=1.0, beta=1.0, dtype=np.float32, name=None, gain=1.0):
        name = name or self.fresh("fc")
        w = self.weights((n, k), k, gain=gain)
        b = self.rng.uniform(-0.2, 0.2, n)
        wn = self.const(name + ".weight", w if trans_b else w.T.copy(), dtype)
        bn = self.const(name + ".bias", b, dtype)
        return self.node("Gemm", [x, wn, bn], name=name, transB=trans_b, alpha=alpha, beta=beta)

    def model(self, output, opset):
        inp = helper.make_tensor_value_info("input", F, ["N", self.channels, self.patch, self.patch])
        outs = [helper.make_tensor_value_info(o, F, ["N", None]) for o in [output] + self.extra_outputs]
        graph = helper.make_graph(self.nodes, self.name, [inp], outs, initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tessera-fixtures")
        m.ir_version = min(m.ir_version, 10)
        onnx.checker.check_model(m)
        return m


# ---------------------------------------------------------------------------
# The nets
# ---------------------------------------------------------------------------


def conv_pool_gemm():
    g = Graph("conv_pool_gemm", 3, 19, seed=1)
    x = g.conv("input", 3, 8, 3)  # 17
    x = g.node("Relu", [x])
    x = g.conv(x, 8, 8, 3, group=2, bias=False, dilations=[2, 2])  # 13
    x = g.node("LeakyRelu", [x], alpha=0.1)
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])  # 6, windows tile exactly
    x = g.node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 3
    x = g.conv(x, 8, 6, 1)  # 3
    x = g.node("Flatten", [x], axis=1)
    x = g.gemm(x, 54, 16, trans_b=1, gain=4.0)
    x = g.node("Tanh", [x])
    x = g.gemm(x, 16, 4, trans_b=0, alpha=0.5, beta=2.0)
    x = g.node("Softmax", [x], axis=-1)
    g.covers = [
        "Conv k3 with bias; Conv dilation 2, group 2, no bias",
        "Relu, LeakyRelu 0.1, Tanh",
        "MaxPool 3/2 and AveragePool 2/2, ceil_mode 0, windows covering the input",
        "Flatten + Gemm transB=1, Gemm transB=0 alpha 0.5 beta 2",
        "Softmax axis -1 (opset 13)",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[104.0, 117.0, 123.0], std=[], scale=0.015625)
    return g, g.model(x, 13), pre, True


def bn_lrn_matmul_fp16():
    g = Graph("bn_lrn_matmul_fp16", 3, 17, seed=2)
    x = g.conv("input", 3, 6, 3, dtype=np.float16, strides=[2, 2])  # 8
    x = g.bn(x, 6, raw=False)
    lo = g.const("clip_min", np.array(0.0, dtype=np.float32))
    x = g.node("Clip", [x, lo])
    x = g.node("LRN", [x], size=3, alpha=1e-2, beta=0.75, bias=1.5)
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)  # 4
    x = g.node("Sigmoid", [x])
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x])
    w = g.const("head.weight", g.weights((6, 3), 6, gain=8.0))
    x = g.node("MatMul", [x, w])
    b = g.const("head.bias", g.rng.uniform(-0.5, 0.5, 3))
    x = g.node("Add", [x, b])
    x = g.node("Softmax", [x], axis=1)
    g.covers = [
        "Conv stride 2 with float16 initializers (Cast to float32)",
        "BatchNormalization (values in float_data), epsilon 1e-3",
        "Clip(min 0) as ReLU (opset 11 inputs)",
        "LRN size 3, alpha, beta, bias",
        "MaxPool ceil_mode 1, Sigmoid, GlobalAveragePool",
        "Flatten + MatMul + Add (the bias folded)",
        "Softmax axis 1 (opset 11)",
    ]
    pre = dict(
        channel_order="rgb", raw_scale=1.0 / 255.0, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], scale=1.0
    )
    return g, g.model(x, 11), pre, True


def branches():
    g = Graph("branches", 3, 14, seed=3)
    a = g.conv("input", 3, 4, 3)  # 12
    a = g.node("Relu", [a])
    b1 = g.conv(a, 4, 4, 3)  # 10
    b2 = g.conv(a, 4, 4, 3)  # 10
    s = g.const("branch.scale", g.rng.uniform(0.5, 1.5, (4, 1, 1)))
    b2 = g.node("Mul", [b2, s])
    add = g.node("Add", [b1, b2])
    off = g.const("offset", np.array([0.1], dtype=np.float32))
    add = g.node("Sub", [add, off])
    cat = g.node("Concat", [b1, add], axis=1)  # 8 channels
    p = g.node("MaxPool", [cat], kernel_shape=[2, 2], strides=[2, 2])  # 5
    sq = g.node("Mul", [p, p])
    d = g.node("Sub", [sq, p])
    x = g.node("GlobalMaxPool", [d])
    x = g.node("Flatten", [x])
    x = g.gemm(x, 8, 3, gain=0.002)
    x = g.node("Identity", [x])
    x = g.node("Dropout", [x])
    x = g.node("Softmax", [x], axis=-1)
    g.covers = [
        "two branches from one tensor, Add of two activations",
        "Mul by a per-channel constant (C×1×1), Sub of a scalar constant",
        "Concat along channels, Mul and Sub of two activations",
        "GlobalMaxPool, Gemm, Identity, Dropout (opset 17)",
    ]
    pre = dict(channel_order="rgb", raw_scale=1.0 / 255.0, mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 0.2], scale=1.0)
    return g, g.model(x, 17), pre, True


def residual(name, identity, seed):
    """A ResNet-style block: Conv pad 1 + BatchNormalization + Relu, then a residual Add. With
    `identity`, the shortcut is the block's input (a ResNet basic block: its branches see
    windows of different sizes around one centre); otherwise a 3×3 projection whose window
    equals the other branch's. Tessera runs both with --allow-padding."""
    g = Graph(name, 3, 16, seed=seed)
    x = g.conv("input", 3, 8, 3, pads=[1, 1, 1, 1])  # 16
    x = g.bn(x, 8)
    x = g.node("Relu", [x])
    if identity:
        y = g.conv(x, 8, 8, 3, pads=[1, 1, 1, 1])
        y = g.bn(y, 8)
        y = g.node("Relu", [y])
        y = g.conv(y, 8, 8, 3, pads=[1, 1, 1, 1])
        shortcut = x
    else:
        y = g.conv(x, 8, 8, 3, pads=[1, 1, 1, 1])
        shortcut = g.conv(x, 8, 8, 3, pads=[1, 1, 1, 1], bias=False)
    y = g.bn(y, 8)
    x = g.node("Add", [shortcut, y])
    x = g.node("Relu", [x])
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 8
    x = g.node("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=1)
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x])
    x = g.gemm(x, 8, 2)
    x = g.node("Softmax", [x], axis=1)
    g.covers = [
        "Conv pad 1 + BatchNormalization + Relu, residual Add "
        + ("with the identity shortcut (a ResNet basic block)" if identity else "with a 3×3 projection shortcut"),
        "AveragePool with pads and count_include_pad 1",
        "GlobalAveragePool + Flatten + Gemm head (opset 9)",
        "not exact (padding): refused without --allow-padding"
        + ("; the identity shortcut's window (3×3) is smaller than the other branch's (7×7), same centre" if identity else ""),
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[127.0], std=[], scale=1.0 / 64)
    return g, g.model(x, 9), pre, False


def padded_residual():
    return residual("padded_residual", identity=False, seed=4)


def resnet_block():
    return residual("resnet_block", identity=True, seed=6)


def misc_ops():
    g = Graph("misc_ops", 3, 12, seed=7)
    # Conv with auto_pad SAME_UPPER (stride 1, odd kernel: symmetric), float64 weights.
    w = g.rng.standard_normal((6, 3, 3, 3)) * np.sqrt(2.0 / 27)
    wn = g.const("same.weight", w, dtype=np.float64)
    wc = g.node("Cast", [wn], name="same.weight_cast", to=F)
    x = g.node("Conv", ["input", wc], name="same", auto_pad="SAME_UPPER")  # 12
    # float16 values stored in int32_data (helper.make_tensor, raw=False), Cast to float32.
    bias = helper.make_tensor("shift_fp16", TensorProto.FLOAT16, [6, 1, 1],
                              g.rng.uniform(-0.5, 0.5, 6).astype(np.float16).tolist(), raw=False)
    g.inits.append(bias)
    b = g.node("Cast", ["shift_fp16"], name="shift_cast", to=F)
    x = g.node("Sub", [b, x])  # constant − activation
    x = g.node("Clip", [x])  # opset 10: min and max attributes left at the float limits: no bound
    x = g.node("Relu", [x])
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[3, 3])  # 4
    shape = g.node("Constant", [], value=helper.make_tensor("shape", TensorProto.INT64, [2], [0, -1]))
    x = g.node("Reshape", [x, shape])
    x = g.gemm(x, 96, 5, gain=0.5)
    x = g.node("Softmax", [x])  # opset 10: axis 1 by default
    g.covers = [
        "Conv auto_pad SAME_UPPER (not exact: it pads), float64 weights (Cast)",
        "float16 constant in int32_data (Cast), Sub of constant minus activation",
        "Clip without effective bounds (opset 10 attributes), Relu",
        "Constant node + Reshape [0, -1] as the flatten, Gemm, Softmax with opset 10's default axis",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[110.0, 120.0, 130.0], std=[60.0], scale=1.0)
    return g, g.model(x, 10), pre, False


def floor_pool():
    g = Graph("floor_pool", 3, 20, seed=8)
    x = g.conv("input", 3, 6, 3)  # 18
    x = g.node("Relu", [x])
    # Rounded down: 8 windows, the 18th row is in none of them (rounded up: 9, the last partial).
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=0)
    x = g.node("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2])  # 3 (rounded up: 4)
    x = g.node("Flatten", [x])
    x = g.gemm(x, 54, 3, gain=2.0)
    x = g.node("Softmax", [x], axis=1)
    g.covers = [
        "MaxPool 3/2 and AveragePool 3/2 with ceil_mode 0 over partial last windows at patch size: "
        + "rounded down, the last rows are in no window (exact: nothing pads)",
        "Flatten + Gemm over the 3×3 pooled map (opset 13)",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[104.0, 117.0, 123.0], std=[], scale=0.015625)
    return g, g.model(x, 13), pre, True


def resnet_stem():
    """A torchvision ResNet's stem and first block at an even patch size (P = 32, as 224 is):
    Conv 7×7/2 pad 3, MaxPool 3/2 pad 1 ceil_mode 0 (rounded up it would give one more row),
    a basic block, then AveragePool 3/2 pad 1 ceil_mode 0 and the global pool head."""
    g = Graph("resnet_stem", 3, 32, seed=9)
    x = g.conv("input", 3, 8, 7, strides=[2, 2], pads=[3, 3, 3, 3], bias=False)  # 16
    x = g.bn(x, 8)
    x = g.node("Relu", [x])
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # 8 (up: 9)
    y = g.conv(x, 8, 8, 3, pads=[1, 1, 1, 1], bias=False)
    y = g.bn(y, 8)
    y = g.node("Relu", [y])
    y = g.conv(y, 8, 8, 3, pads=[1, 1, 1, 1], bias=False)
    y = g.bn(y, 8)
    x = g.node("Add", [x, y])
    x = g.node("Relu", [x])
    x = g.node("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
               count_include_pad=1, ceil_mode=0)  # 4 (up: 5)
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x])
    x = g.gemm(x, 8, 2, gain=4.0)
    x = g.node("Softmax", [x], axis=1)
    g.covers = [
        "a ResNet stem at an even patch size: Conv 7×7/2 pad 3 + BatchNormalization + Relu, "
        + "MaxPool 3/2 pad 1 ceil_mode 0 (PyTorch's default), rounded down where rounding up adds a window",
        "a basic block (identity shortcut), AveragePool 3/2 pad 1 count_include_pad 1 ceil_mode 0",
        "GlobalAveragePool + Flatten + Gemm head (opset 13); not exact (padding)",
    ]
    pre = dict(channel_order="rgb", raw_scale=1.0 / 255.0, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
               scale=1.0)
    return g, g.model(x, 13), pre, False


SEED_LAYERS = """the seed's efficient-pixelwise/deploy.prototxt: conv1 32×3×3 → ReLU → LRN 5 → MAX 4/2 →
conv2 32×3×3 → ReLU → LRN 5 → MAX 2/2 → fc6 64 → ReLU → Dropout → fc7 64 → ReLU → Dropout → fc8 2 → Softmax"""


def seed_net():
    g = Graph("seed_net", 3, 32, seed=5)
    r = g.rng
    # Weights rounded to float16 values: the ONNX file stores them as float16, the
    # caffemodel as the same values in float32.
    def half(a):
        return np.asarray(a, dtype=np.float32).astype(np.float16).astype(np.float32)

    w = {
        "conv1": (half(g.weights((32, 3, 3, 3), 27)), half(r.uniform(-0.1, 0.1, 32))),
        "conv2": (half(g.weights((32, 32, 3, 3), 288)), half(r.uniform(-0.1, 0.1, 32))),
        "fc6": (half(g.weights((64, 1152), 1152)), half(r.uniform(-0.1, 0.1, 64))),
        "fc7": (half(g.weights((64, 64), 64)), half(r.uniform(-0.1, 0.1, 64))),
        "fc8": (half(g.weights((2, 64), 64, gain=0.02)), half(r.uniform(-0.1, 0.1, 2))),
    }

    def c(name):
        return g.const(name + ".weight", w[name][0], np.float16), g.const(name + ".bias", w[name][1], np.float16)

    x = g.node("Conv", ["input", *c("conv1")], name="conv1")
    x = g.node("Relu", [x], name="relu1")
    x = g.node("LRN", [x], name="norm1", size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = g.node("MaxPool", [x], name="pool1", kernel_shape=[4, 4], strides=[2, 2], ceil_mode=1)
    x = g.node("Conv", [x, *c("conv2")], name="conv2")
    x = g.node("Relu", [x], name="relu2")
    x = g.node("LRN", [x], name="norm2", size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = g.node("MaxPool", [x], name="pool2", kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Flatten", [x], name="flatten")
    for i, name in enumerate(["fc6", "fc7", "fc8"]):
        x = g.node("Gemm", [x, *c(name)], name=name, transB=1)
        if name != "fc8":
            x = g.node("Relu", [x], name=f"relu{6 + i}")
            x = g.node("Dropout", [x], name=f"drop{6 + i}")
    x = g.node("Softmax", [x], name="prob", axis=1)
    g.covers = [
        "the seed net's shapes (" + SEED_LAYERS.replace("\n", " ") + ")",
        "float16 initializers (Cast), kept in an external-data file next to the model",
        "the same weights as deploy.prototxt + weights.caffemodel (Caffe), for the Caffe-vs-ONNX map",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[104.0, 117.0, 123.0], std=[], scale=0.0125)
    return g, g.model(x, 18), pre, True, w


# ---------------------------------------------------------------------------
# Exporter patterns (user audit 15): shape arithmetic, Div, Pad, PRelu, reductions,
# LogSoftmax, whole-float16 models
# ---------------------------------------------------------------------------


def ints(g, name, values):
    g.inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
    return name


def view_flatten_op11():
    """PyTorch's x.view(x.size(0), -1) at opset 11 with Slice and Cast pieces, Div by
    constants, and a LogSoftmax head (the map holds exp of its output)."""
    g = Graph("view_flatten_op11", 3, 14, seed=10)
    x = g.node("Div", ["input", g.const("div.scalar", np.array(2.0))])
    x = g.conv(x, 3, 6, 3)  # 12
    x = g.node("Relu", [x])
    x = g.node("Div", [x, g.const("div.channels", g.rng.uniform(0.5, 2.0, (6, 1, 1)))])
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 6
    x = g.conv(x, 6, 4, 3)  # 4
    s = g.node("Shape", [x])
    b = g.node("Slice", [s, ints(g, "slice.starts", [0]), ints(g, "slice.ends", [1]), ints(g, "slice.axes", [0])])
    b = g.node("Cast", [b], to=TensorProto.INT32)
    b = g.node("Cast", [b], to=TensorProto.INT64)
    target = g.node("Concat", [b, ints(g, "minus_one", [-1])], axis=0)
    x = g.node("Reshape", [x, target])
    x = g.gemm(x, 64, 3, gain=0.3)
    x = g.node("LogSoftmax", [x])  # opset 11: axis 1 by default
    g.log_output = True
    g.covers = [
        "x.view(x.size(0), -1) as Shape → Slice (starts/ends/axes inputs) → Cast INT32 → Cast INT64 → "
        + "Concat with an initializer [-1] → Reshape (opset 11), evaluated at import",
        "Div by a scalar and by a per-channel (C×1×1) constant",
        "LogSoftmax head imported as Softmax: the references are exp(onnxruntime's output)",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[104.0, 117.0, 123.0], std=[], scale=0.015625)
    return g, g.model(x, 11), pre, True


def view_flatten_op13():
    """x.view(x.size(0), x.size(1) * x.size(2) * x.size(3)) at opset 13 (Gather, Mul,
    Unsqueeze with axes as an input, a Constant node), after a per-channel PRelu."""
    g = Graph("view_flatten_op13", 3, 13, seed=11)
    x = g.conv("input", 3, 5, 3)  # 11
    x = g.node("PRelu", [x, g.const("prelu.slope", g.rng.uniform(-0.5, 0.8, (5, 1, 1)))])
    x = g.node("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2])  # 5
    x = g.node("PRelu", [x, g.const("prelu.shared", np.array([0.2]))])
    s = g.node("Shape", [x])
    dims = [g.node("Gather", [s, ints(g, f"index{i}", i)], axis=0) for i in range(4)]
    feat = g.node("Mul", [g.node("Mul", [dims[1], dims[2]]), dims[3]])
    axes = g.node("Constant", [], value=helper.make_tensor("axes", TensorProto.INT64, [1], [0]))
    n = g.node("Unsqueeze", [dims[0], axes])
    f = g.node("Unsqueeze", [feat, axes])
    x = g.node("Reshape", [x, g.node("Concat", [n, f], axis=0)])
    x = g.gemm(x, 125, 4, gain=2.0)
    x = g.node("Softmax", [x], axis=-1)
    g.covers = [
        "PRelu with a slope per channel (ReLU, Eltwise, Scale) and one shared slope (a leaky ReLU)",
        "x.view(x.size(0), x.size(1) * x.size(2) * x.size(3)): Shape → Gather → Mul → Unsqueeze "
        + "(axes from a Constant node, opset 13) → Concat → Reshape, evaluated at import",
    ]
    pre = dict(channel_order="rgb", raw_scale=1.0 / 255.0, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
               scale=1.0)
    return g, g.model(x, 13), pre, True


def pooled_heads(name, opset, seed):
    """Global pooling written as reductions: x.mean([2, 3]) (ReduceMean, keepdims 0),
    ReduceMax keepdims 1 + Squeeze of axes 2, 3, GlobalAveragePool + Squeeze without axes,
    their features concatenated. Axes are attributes before opset 18 (Squeeze: 13)."""
    g = Graph(name, 3, 12, seed=seed)
    x = g.conv("input", 3, 4, 3)  # 10
    x = g.node("Relu", [x])
    x = g.conv(x, 4, 4, 3, strides=[2, 2])  # 4
    if opset >= 18:
        mean = g.node("ReduceMean", [x, ints(g, "mean.axes", [2, 3])], keepdims=0)
        mx = g.node("ReduceMax", [x, ints(g, "max.axes", [-2, -1])])
    else:
        mean = g.node("ReduceMean", [x], axes=[2, 3], keepdims=0)
        mx = g.node("ReduceMax", [x], axes=[-2, -1])
    mx = g.node("Squeeze", [mx, ints(g, "squeeze.axes", [2, 3])] if opset >= 13 else [mx], **({} if opset >= 13 else {"axes": [2, 3]}))
    gap = g.node("Squeeze", [g.node("GlobalAveragePool", [x])])
    x = g.node("Concat", [mean, mx, gap], axis=1)
    x = g.gemm(x, 12, 3, gain=0.5)
    x = g.node("Softmax", [x], axis=1)
    where = "inputs (opset 18)" if opset >= 18 else f"attributes (opset {opset})"
    g.covers = [
        f"ReduceMean keepdims 0 and ReduceMax keepdims 1 over axes 2, 3 as {where}: global pooling",
        "Squeeze of axes 2, 3 and Squeeze without axes after global pooling: a flatten",
        "Concat of the flattened 1×1 features, Gemm, Softmax",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[120.0], std=[], scale=1.0 / 64)
    return g, g.model(x, opset), pre, True


def pooled_heads_op18():
    return pooled_heads("pooled_heads_op18", 18, seed=12)


def pooled_heads_op11():
    return pooled_heads("pooled_heads_op11", 11, seed=13)


def zero_pad():
    """ZeroPad2d before a Conv and before an AveragePool (count_include_pad 0): folded into
    their pads, the same numbers; the net pads, so it runs with --allow-padding."""
    g = Graph("zero_pad", 3, 12, seed=14)
    x = g.node("Pad", ["input", ints(g, "pad1.pads", [0, 0, 1, 1, 0, 0, 1, 1]),
                       g.const("pad1.value", np.array(0.0))], mode="constant")
    x = g.conv(x, 3, 6, 3)  # 12
    x = g.node("Relu", [x])
    x = g.node("Pad", [x, ints(g, "pad2.pads", [0, 0, 1, 2, 0, 0, 1, 2])])
    x = g.node("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2])  # 6×7 → 5×6? see below
    x = g.conv(x, 6, 4, 3)
    x = g.node("Flatten", [x])
    x = g.gemm(x, 4 * 4 * 5, 3, gain=2.0)
    x = g.node("Softmax", [x], axis=1)
    g.covers = [
        "Pad (constant 0, spatial, symmetric) folded into the next Conv's pads",
        "Pad of 1×2 folded into an AveragePool with count_include_pad 0 (the Pad's zeros are counted)",
        "not exact (padding): refused without --allow-padding (opset 13)",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[110.0], std=[], scale=1.0 / 50)
    return g, g.model(x, 13), pre, False


def relu_pad_maxpool():
    """ZeroPad2d between a ReLU and a MaxPool (as TF/Keras exports pad a max pool): the ReLU's
    output is never negative, so the zeros pad like MaxPool's own (−∞) padding, and the Pad is
    folded into the MaxPool's pads; the net pads, so it runs with --allow-padding."""
    g = Graph("relu_pad_maxpool", 3, 12, seed=15)
    x = g.conv("input", 3, 6, 3)  # 10
    x = g.node("Relu", [x])
    x = g.node("Pad", [x, ints(g, "pad.pads", [0, 0, 1, 1, 0, 0, 1, 1])])  # 12
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])  # 5
    x = g.conv(x, 6, 4, 3)  # 3
    x = g.node("Flatten", [x])
    x = g.gemm(x, 4 * 3 * 3, 3, gain=0.5)
    x = g.node("Softmax", [x], axis=1)
    g.covers = [
        "Pad (constant 0) after a Relu folded into the MaxPool that reads it (zeros = −∞ there)",
        "not exact (padding): refused without --allow-padding (opset 13)",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[110.0], std=[], scale=1.0 / 50)
    return g, g.model(x, 13), pre, False


def keras_head():
    """A Keras model exported as NCHW (tf2onnx --inputs-as-nchw): Keras's Flatten reads H×W×C, so a
    Transpose(0, 2, 3, 1) stays before the Reshape → MatMul → Add head; Tessera folds it into the
    weights. Max(x, 0) as a ReLU. The logits are a second graph output (the Softmax one is mapped),
    and a node after the head that nothing reads is left out."""
    g = Graph("keras_head", 3, 12, seed=16)
    x = g.conv("input", 3, 5, 3)  # 10
    x = g.node("Max", [x, g.const("zero", np.array(0.0, dtype=np.float32))])
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 5
    x = g.conv(x, 5, 3, 2)  # 3 channels, 4×4: the H, W, C order differs from C, H, W
    x = g.node("Transpose", [x], perm=[0, 2, 3, 1])
    x = g.node("Reshape", [x, ints(g, "flatten.shape", [0, -1])])
    logits = g.node("MatMul", [x, g.const("dense.kernel", g.weights((48, 3), 48, gain=6.0))])
    logits = g.node("Add", [logits, g.const("dense.bias", g.rng.uniform(-0.3, 0.3, 3))])
    probs = g.node("Softmax", [logits], axis=1)
    g.node("Relu", [logits], name="unused_after_head")
    g.extra_outputs = [logits]
    g.covers = [
        "Transpose(0, 2, 3, 1) → Reshape [0, -1] → MatMul + Add: a Keras Flatten + Dense, folded into the weights",
        "Max(x, 0) as a ReLU",
        "two graph outputs (probabilities, logits): the one ending in Softmax is mapped",
        "a node nothing reads after the head, left out",
    ]
    pre = dict(channel_order="rgb", raw_scale=1.0 / 255.0, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], scale=1.0)
    return g, g.model(probs, 13), pre, True


def abs_activation():
    g = Graph("abs_activation", 3, 14, seed=11)
    x = g.conv("input", 3, 6, 3)  # 12
    x = g.node("Abs", [x])
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 6
    x = g.conv(x, 6, 8, 3)  # 4
    x = g.node("Abs", [x])
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x])
    x = g.gemm(x, 8, 3, gain=2.0)
    x = g.node("Softmax", [x], axis=1)
    g.covers = [
        "Abs after a Conv (imported as a ReLU of negative slope -1) before a MaxPool",
        "Abs before a GlobalAveragePool, Flatten + Gemm head (opset 13)",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[104.0, 117.0, 123.0], std=[], scale=0.015625)
    return g, g.model(x, 13), pre, True


def elu_softplus():
    g = Graph("elu_softplus", 3, 14, seed=13)
    x = g.conv("input", 3, 6, 3)  # 12
    x = g.node("Elu", [x], alpha=0.7)
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 6
    x = g.conv(x, 6, 8, 3)  # 4
    x = g.node("Softplus", [x])
    x = g.conv(x, 8, 8, 3)  # 2
    x = g.node("Elu", [x])
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x])
    x = g.gemm(x, 8, 3, gain=2.0)
    x = g.node("Softmax", [x], axis=1)
    g.covers = [
        "Elu with alpha 0.7 after a Conv, before a MaxPool",
        "Softplus (log(1 + e^x)) after a Conv",
        "Elu with its default alpha (1)",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[104.0, 117.0, 123.0], std=[], scale=0.015625)
    return g, g.model(x, 13), pre, True


def clamps():
    g = Graph("clamps", 3, 14, seed=12)
    x = g.conv("input", 3, 6, 3)  # 12
    x = g.node("Mul", [x, g.const("gain1", np.full((6, 1, 1), 6.0))])
    x = g.node("Clip", [x, g.const("zero", np.array(0.0)), g.const("six", np.array(6.0))])  # ReLU6
    x = g.conv(x, 6, 6, 3)  # 10
    x = g.node("HardSwish", [x])
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 5
    x = g.conv(x, 6, 8, 3)  # 3
    x = g.node("Clip", [x, g.const("minus_one", np.array(-1.0)), g.const("one", np.array(1.0))])  # Hardtanh
    x = g.node("HardSigmoid", [x], alpha=0.7, beta=0.4)
    x = g.node("Clip", [x, "", g.const("cap", np.array(0.8))])  # only a maximum
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x])
    x = g.gemm(x, 8, 3, gain=4.0)
    x = g.node("Softmax", [x], axis=1)
    g.covers = [
        "Clip [0, 6] (ReLU6) over values well past 6, Clip [-1, 1] (Hardtanh), Clip with only a maximum",
        "HardSwish, HardSigmoid alpha 0.7 beta 0.4 (opset 14)",
        "all imported as ReLU and Scale layers (ClampSteps), Eltwise PROD for HardSwish",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[104.0, 117.0, 123.0], std=[], scale=0.015625)
    return g, g.model(x, 14), pre, True


def sparse_pool():
    g = Graph("sparse_pool", 3, 20, seed=13)
    x = g.conv("input", 3, 6, 3)  # 18
    x = g.node("Relu", [x])
    # Stride 3 over a kernel of 2, ceil_mode 1: rounded up there would be a 7th window starting at
    # row 18, past the input; onnxruntime (and PyTorch) drop it, so 6 windows (exact: none partial).
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[3, 3], ceil_mode=1)  # 6
    w = g.weights((8, 6, 2, 3), 6 * 2 * 3)
    x = g.node("Conv", [x, g.const("aniso.weight", w), g.const("aniso.bias", g.rng.uniform(-0.2, 0.2, 8))],
               name="aniso", kernel_shape=[2, 3], strides=[2, 1])  # 3×4: total stride 6×3
    x = g.node("Relu", [x])
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x])
    x = g.gemm(x, 8, 3, gain=0.3)
    x = g.node("Softmax", [x], axis=1)
    g.covers = [
        "MaxPool 2/3 with ceil_mode 1: the window rounding up would add starts past the input and is dropped",
        "Conv kernel 2×3 stride 2×1: total stride 6×3 (shift tiles a multiple of both strides)",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[104.0, 117.0, 123.0], std=[], scale=0.015625)
    return g, g.model(x, 13), pre, True


def float16_model():
    """A whole-float16 model as onnxconverter-common writes it (keep_io_types): the float32
    input Cast to FLOAT16, float16 weights used directly, the output Cast back to FLOAT.
    Tessera computes it in float32."""
    g = Graph("float16_model", 3, 12, seed=15)
    half = np.float16
    x = g.node("Cast", ["input"], to=TensorProto.FLOAT16)
    w = numpy_helper.from_array(g.weights((6, 3, 3, 3), 27).astype(half), "conv.weight")
    b = numpy_helper.from_array(g.rng.uniform(-0.2, 0.2, 6).astype(half), "conv.bias")
    g.inits += [w, b]
    x = g.node("Conv", [x, "conv.weight", "conv.bias"])  # 10
    x = g.node("Relu", [x])
    x = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 5
    x = g.node("Flatten", [x])
    fw = numpy_helper.from_array(g.weights((3, 150), 150, gain=0.3).astype(half), "fc.weight")
    fb = numpy_helper.from_array(g.rng.uniform(-0.2, 0.2, 3).astype(half), "fc.bias")
    g.inits += [fw, fb]
    x = g.node("Gemm", [x, "fc.weight", "fc.bias"], transB=1)
    x = g.node("Softmax", [x], axis=1)
    x = g.node("Cast", [x], to=F)
    g.covers = [
        "a whole-float16 model (Cast → FLOAT16, float16 initializers, Cast → FLOAT): computed in float32",
        "the references are onnxruntime's CPU run of this model (which computes its float16 operators in float32)",
    ]
    pre = dict(channel_order="bgr", raw_scale=1.0, mean=[104.0, 117.0, 123.0], std=[], scale=0.015625)
    return g, g.model(x, 17), pre, True


# ---------------------------------------------------------------------------
# Caffe files for the seed net (protobuf written by hand: field numbers of caffe.proto)
# ---------------------------------------------------------------------------


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def blob(arr):
    dims = b"".join(varint(int(d)) for d in arr.shape)
    return field(7, field(1, dims)) + field(5, np.asarray(arr, "<f4").ravel().tobytes())


def caffemodel(weights):
    out = field(1, b"seed_net")
    for name, typ in [("conv1", "Convolution"), ("conv2", "Convolution"), ("fc6", "InnerProduct"),
                      ("fc7", "InnerProduct"), ("fc8", "InnerProduct")]:
        body = field(1, name.encode()) + field(2, typ.encode())
        for a in weights[name]:
            body += field(7, blob(a))
        out += field(100, body)
    return out


SEED_PROTOTXT = """name: "seed_net"
input: "data"
input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 32 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1" pooling_param { pool: MAX kernel_size: 4 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" convolution_param { num_output: 32 kernel_size: 3 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "norm2" type: "LRN" bottom: "conv2" top: "norm2" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layer { name: "pool2" type: "Pooling" bottom: "norm2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool2" top: "fc6" inner_product_param { num_output: 64 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7" inner_product_param { num_output: 64 } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
layer { name: "drop7" type: "Dropout" bottom: "fc7" top: "fc7" }
layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8" inner_product_param { num_output: 2 } }
layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
"""


# ---------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------


def session(path):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run(sess, x, batch=256):
    outs = []
    for i in range(0, len(x), batch):
        outs.append(sess.run(None, {"input": np.ascontiguousarray(x[i : i + batch], dtype=np.float32)})[0])
    return np.concatenate(outs).reshape(len(x), -1)


def preprocess(img, pre, channels):
    """float32 arithmetic in the engine's order: ((raw·raw_scale − mean[c]) / std[c]) · scale."""
    order = [2, 1, 0] if pre["channel_order"] == "bgr" else [0, 1, 2]
    out = np.empty((channels,) + img.shape[:2], np.float32)
    for c in range(channels):
        v = img[:, :, order[c]].astype(np.float32) * np.float32(pre["raw_scale"])
        mean = pre["mean"][c] if len(pre["mean"]) > 1 else (pre["mean"][0] if pre["mean"] else 0.0)
        v = v - np.float32(mean)
        if pre["std"]:
            v = v / np.float32(pre["std"][c] if len(pre["std"]) > 1 else pre["std"][0])
        out[c] = v * np.float32(pre["scale"])
    return out


def mirror(i, n):
    m = i % (2 * n)
    return m if m < n else 2 * n - 1 - m


def naive_map(sess, chw, p, classes):
    c, h, w = chw.shape
    a = p // 2
    rows = [mirror(i - a, h) for i in range(h + p - 1)]
    cols = [mirror(j - a, w) for j in range(w + p - 1)]
    padded = chw[:, rows][:, :, cols]
    patches = np.stack([padded[:, y : y + p, x : x + p] for y in range(h) for x in range(w)])
    probs = run(sess, patches)
    return probs.T.reshape(classes, h, w).astype(np.float32)


class Exp:
    """A session whose output is exp of the model's (a LogSoftmax head's probabilities)."""

    def __init__(self, sess):
        self.sess = sess

    def run(self, names, feeds):
        return [np.exp(o) for o in self.sess.run(names, feeds)]


def describe(file, arr, dtype):
    return {"file": file, "dtype": dtype, "shape": list(arr.shape)}


def write(folder, name, arr, dtype):
    np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<")).tofile(os.path.join(folder, name))


def build(g, model, pre, exact, caffe_weights=None):
    folder = os.path.join(ROOT, g.name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    path = os.path.join(folder, "model.onnx")
    if caffe_weights is not None:
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="model.onnx.data", size_threshold=0)
        with open(os.path.join(folder, "deploy.prototxt"), "w") as f:
            f.write(SEED_PROTOTXT)
        with open(os.path.join(folder, "weights.caffemodel"), "wb") as f:
            f.write(caffemodel(caffe_weights))
    else:
        onnx.save_model(model, path)
    sess = session(path)
    if g.log_output:
        sess = Exp(sess)
    rng = np.random.default_rng(100 + len(g.name))
    p, c = g.patch, g.channels
    patches = rng.uniform(-1.5, 1.5, (4 if p > 24 else 8, c, p, p)).astype(np.float32)
    probs = run(sess, patches).astype(np.float32)
    classes = probs.shape[1]
    image = rng.integers(0, 256, (11, 13, 3), dtype=np.uint8)
    chw = preprocess(image, pre, c)
    if c == 1:
        pass
    nmap = naive_map(sess, chw, p, classes)
    write(folder, "patches.f32", patches, np.float32)
    write(folder, "patches_probs.f32", probs, np.float32)
    write(folder, "image.u8", image, np.uint8)
    write(folder, "map.f32", nmap, np.float32)
    opset = model.opset_import[0].version
    manifest = {
        "name": g.name,
        "patch_size": p,
        "input_channels": c,
        "classes": classes,
        "opset": opset,
        "exact": exact,
        "covers": g.covers,
        "reference": f"onnxruntime {ort.__version__} (CPU, graph optimizations off)",
        "tolerance": g.tolerance,
        "preprocess": pre,
        "patches": {"input": describe("patches.f32", patches, "float32"),
                    "probabilities": describe("patches_probs.f32", probs, "float32")},
        "image": describe("image.u8", image, "uint8"),
        "map": describe("map.f32", nmap, "float32"),
    }
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    spread = float(probs.max() - probs.min())
    size = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
    print(f"{g.name}: opset {opset}, P {p}, {classes} classes, probability spread {spread:.3f}, "
          f"map range {nmap.min():.3f}..{nmap.max():.3f}, {size} bytes")


NETS = [conv_pool_gemm, bn_lrn_matmul_fp16, branches, padded_residual, resnet_block, misc_ops, floor_pool,
        resnet_stem, view_flatten_op11, view_flatten_op13, pooled_heads_op18, pooled_heads_op11, zero_pad,
        float16_model, relu_pad_maxpool, keras_head, abs_activation, clamps, sparse_pool,
        elu_softplus]


def main():
    """All fixtures, or those named: make_fixtures.py zero_pad float16_model"""
    wanted = set(sys.argv[1:])
    for make in NETS:
        if not wanted or make.__name__ in wanted:
            g, model, pre, exact = make()
            build(g, model, pre, exact)
    if not wanted or "seed_net" in wanted:
        g, model, pre, exact, w = seed_net()
        build(g, model, pre, exact, caffe_weights=w)


if __name__ == "__main__":
    sys.exit(main())
