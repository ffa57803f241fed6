#!/usr/bin/env python3
"""GPU peer for Tessera's CUDA engine: the same dense net in PyTorch/cuDNN.

Builds the dense (dilated) form of a net from the JSON that
`tessera-coordinator gpu-check --export-dense FILE` writes (the layer list of
exactly what Tessera's dense mode runs), with random weights, and times it the
way gpu-check times Tessera: a host float32 input, copied to the device, the
net, the output copied back (best and median of --repeats after warm-up).
Also reports the device-only time. fp32 means TF32 off and cudnn.benchmark on.

    python3 benchmarks/torch_peer.py dense-net.json [--precision fp32|tf32|bf16] [--repeats 10]
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn


def build(spec):
    layers = []
    for layer in spec["layers"]:
        t = layer["type"]
        if t == "Convolution":
            layers.append(nn.Conv2d(layer["inputs"], layer["outputs"], tuple(layer["kernel"]),
                                    stride=tuple(layer["stride"]), padding=tuple(layer["pad"]),
                                    dilation=tuple(layer["dilation"]), groups=layer["group"]))
        elif t == "ReLU":
            slope = layer.get("slope", 0)
            layers.append(nn.ReLU(inplace=True) if slope == 0 else nn.LeakyReLU(slope, inplace=True))
        elif t == "Pooling":
            if layer["method"] != "MAX" and layer["dilation"] != [1, 1]:
                sys.exit(f"{layer['name']}: PyTorch has no dilated average pooling")
            if layer["method"] == "MAX":
                layers.append(nn.MaxPool2d(tuple(layer["kernel"]), stride=tuple(layer["stride"]),
                                           padding=tuple(layer["pad"]), dilation=tuple(layer["dilation"]),
                                           ceil_mode=layer.get("ceil_mode", True)))
            else:
                layers.append(nn.AvgPool2d(tuple(layer["kernel"]), stride=tuple(layer["stride"]),
                                           padding=tuple(layer["pad"]),
                                           ceil_mode=layer.get("ceil_mode", True)))
        elif t == "LRN":
            if layer["region"] != "ACROSS_CHANNELS":
                sys.exit(f"{layer['name']}: PyTorch has no WITHIN_CHANNEL LRN")
            layers.append(nn.LocalResponseNorm(layer["size"], alpha=layer["alpha"], beta=layer["beta"], k=layer["k"]))
        elif t == "Softmax":
            layers.append(nn.Softmax(dim=1))
        elif t == "Identity":
            continue
        else:
            sys.exit(f"{layer['name']}: layer type {t} not supported by this peer (sequential nets only)")
    return nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("net")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    spec = json.load(open(args.net))
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    model = build(spec).cuda().eval().to(dtype)
    h, w = spec["inputSize"]
    x = torch.rand(1, spec["inputChannels"], h, w) * 2 - 1

    def full():
        return model(x.cuda().to(dtype)).float().cpu()

    def device_only(xd):
        y = model(xd)
        torch.cuda.synchronize()
        return y

    with torch.no_grad():
        for _ in range(3):
            full()
        times = []
        for _ in range(args.repeats):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            y = full()
            times.append(time.perf_counter() - t0)
        xd = x.cuda().to(dtype)
        dev = []
        for _ in range(args.repeats):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            device_only(xd)
            dev.append(time.perf_counter() - t0)
    result = {"peer": f"pytorch {torch.__version__} cudnn {torch.backends.cudnn.version()}",
              "device": torch.cuda.get_device_name(), "precision": args.precision,
              "input": [spec["inputChannels"], h, w], "output": list(y.shape[1:]),
              "best": min(times), "median": statistics.median(times), "deviceOnlyBest": min(dev)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
