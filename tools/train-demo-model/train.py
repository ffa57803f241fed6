#!/usr/bin/env python3
"""Train Tessera's demo model: a 32x32 nuclei-vs-background patch classifier.

Everything is in NumPy (no deep-learning framework): labels from a classical
method, class-balanced patch sampling, a small Caffe-style CNN trained with
Adam, evaluation on a held-out region, export to .npy blobs + deploy.prototxt,
and conversion to a caffemodel by Tessera's own Caffe writer
(`tessera-coordinator convert --weights-npy ... --keep-classifier`).

See README.md beside this file for the method and the numbers.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

# Two BLAS threads: the target is a 2-core CPU, and a fixed count keeps the float sums reproducible.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import numpy as np  # noqa: E402
import skimage.io  # noqa: E402
from skimage import morphology  # noqa: E402
from skimage.color import rgb2hed  # noqa: E402
from skimage.filters import gaussian, threshold_otsu  # noqa: E402

P = 32             # patch size
A = P // 2         # pixels before the centre (docs/ARCHITECTURE.md section 1: rows y-16 ... y+15)
B_AFTER = P - A - 1
HELD_OUT_ROW = 384  # rows 384..511 (the bottom quarter) are never trained on
GUARD = B_AFTER + 1  # training pixels stop 16 rows above it, so no training patch sees a held-out row

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


# ----------------------------------------------------------------------------
# Labels: the classical method
# ----------------------------------------------------------------------------

def classical_labels(rgb):
    """Nuclei mask: hematoxylin optical density (colour deconvolution), smoothed,
    Otsu threshold, then morphological clean-up. Returns (mask, threshold)."""
    hematoxylin = rgb2hed(rgb)[..., 0]
    smooth = gaussian(hematoxylin, sigma=1.5)
    t = threshold_otsu(smooth)
    mask = smooth > t
    mask = morphology.opening(mask, morphology.disk(2))
    mask = morphology.remove_small_objects(mask, max_size=40)
    mask = morphology.remove_small_holes(mask, max_size=40)
    return mask, float(t)


# ----------------------------------------------------------------------------
# The net (Caffe semantics: no padding, floor-exact pooling at 32x32)
# ----------------------------------------------------------------------------

def windows(x, k, s):
    """(B, C, H, W) -> (B, C, Ho, Wo, k, k) view of the k x k windows at stride s."""
    v = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    return v[:, :, ::s, ::s]


def conv_forward(x, w, b):
    """Valid 3x3 (any k) convolution, stride 1. x (B,C,H,W), w (O,C,k,k)."""
    o, c, k, _ = w.shape
    v = windows(x, k, 1)                        # B, C, Ho, Wo, k, k
    bsz, _, ho, wo = v.shape[:4]
    cols = v.transpose(0, 2, 3, 1, 4, 5).reshape(bsz * ho * wo, c * k * k)
    y = cols @ w.reshape(o, -1).T + b           # (B*Ho*Wo, O)
    return y.reshape(bsz, ho, wo, o).transpose(0, 3, 1, 2), cols


def conv_backward(dy, cols, x_shape, w, need_dx=True):
    o, c, k, _ = w.shape
    bsz, _, h, wd = x_shape
    ho, wo = h - k + 1, wd - k + 1
    d = dy.transpose(0, 2, 3, 1).reshape(-1, o)  # (B*Ho*Wo, O)
    dw = (d.T @ cols).reshape(w.shape)
    db = d.sum(0)
    if not need_dx:
        return None, dw, db
    dcols = np.ascontiguousarray((d @ w.reshape(o, -1)).reshape(bsz, ho, wo, c, k, k).transpose(4, 5, 0, 3, 1, 2))
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + ho, j:j + wo] += dcols[i, j]
    return dx, dw, db


def pool_forward(x, k, s):
    """Max pooling, windows entirely inside the input (the net is built so that
    Caffe's ceil rounding gives the same size). First maximum wins, as in Caffe."""
    v = windows(x, k, s)
    bsz, c, ho, wo = v.shape[:4]
    flat = v.reshape(bsz, c, ho, wo, k * k)
    arg = flat.argmax(-1)
    y = np.take_along_axis(flat, arg[..., None], -1)[..., 0]
    return y, arg


def pool_backward(dy, arg, x_shape, k, s):
    dx = np.zeros(x_shape, dtype=dy.dtype)
    ho, wo = dy.shape[2:]
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s] += dy * (arg == i * k + j)
    return dx


class Net:
    """conv1 3x3 -> ReLU -> pool 4/2 -> conv2 3x3 -> ReLU -> pool 2/2 -> fc6 -> ReLU
    -> fc7 -> ReLU -> fc8 (2) -> Softmax. Shapes at 32x32: 30 -> 14 -> 12 -> 6."""

    def __init__(self, rng, c1=16, c2=32, f6=64, f7=32):
        def he(shape, fan_in):
            return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        self.spec = dict(conv1=c1, conv2=c2, fc6=f6, fc7=f7, fc8=2)
        self.params = {
            "conv1.0": he((c1, 3, 3, 3), 27), "conv1.1": np.zeros(c1, np.float32),
            "conv2.0": he((c2, c1, 3, 3), c1 * 9), "conv2.1": np.zeros(c2, np.float32),
            "fc6.0": he((f6, c2 * 36), c2 * 36), "fc6.1": np.zeros(f6, np.float32),
            "fc7.0": he((f7, f6), f6), "fc7.1": np.zeros(f7, np.float32),
            "fc8.0": he((2, f7), f7) * np.float32(0.5), "fc8.1": np.zeros(2, np.float32),
        }

    def forward(self, x, train=False):
        p = self.params
        c1, cols1 = conv_forward(x, p["conv1.0"], p["conv1.1"])
        r1 = np.maximum(c1, 0)
        p1, arg1 = pool_forward(r1, 4, 2)
        c2, cols2 = conv_forward(p1, p["conv2.0"], p["conv2.1"])
        r2 = np.maximum(c2, 0)
        p2, arg2 = pool_forward(r2, 2, 2)
        f = p2.reshape(len(x), -1)                  # Caffe's (C, H, W) flattening
        h6 = np.maximum(f @ p["fc6.0"].T + p["fc6.1"], 0)
        h7 = np.maximum(h6 @ p["fc7.0"].T + p["fc7.1"], 0)
        z = h7 @ p["fc8.0"].T + p["fc8.1"]
        if not train:
            return softmax(z)
        cache = (x, cols1, c1, r1, arg1, p1, cols2, c2, r2, arg2, p2, f, h6, h7)
        return z, cache

    def backward(self, dz, cache):
        p = self.params
        x, cols1, c1, r1, arg1, p1, cols2, c2, r2, arg2, p2, f, h6, h7 = cache
        g = {}
        g["fc8.0"] = dz.T @ h7
        g["fc8.1"] = dz.sum(0)
        d7 = (dz @ p["fc8.0"]) * (h7 > 0)
        g["fc7.0"] = d7.T @ h6
        g["fc7.1"] = d7.sum(0)
        d6 = (d7 @ p["fc7.0"]) * (h6 > 0)
        g["fc6.0"] = d6.T @ f
        g["fc6.1"] = d6.sum(0)
        df = (d6 @ p["fc6.0"]).reshape(p2.shape)
        dr2 = pool_backward(df, arg2, r2.shape, 2, 2)
        dc2 = dr2 * (c2 > 0)
        dp1, g["conv2.0"], g["conv2.1"] = conv_backward(dc2, cols2, p1.shape, p["conv2.0"])
        dr1 = pool_backward(dp1, arg1, r1.shape, 4, 2)
        dc1 = dr1 * (c1 > 0)
        _, g["conv1.0"], g["conv1.1"] = conv_backward(dc1, cols1, x.shape, p["conv1.0"], need_dx=False)
        return g


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


class Adam:
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-4):
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, beta1, beta2, eps, weight_decay
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        for k, g in grads.items():
            if k.endswith(".0"):
                g = g + self.wd * params[k]
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            params[k] -= (self.lr * (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + self.eps)).astype(np.float32)


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------

def preprocess(bgr, mean, scale):
    """Caffe's transform: (raw - mean[c]) * scale, raw 0-255 in BGR order."""
    return ((bgr.astype(np.float32) - np.asarray(mean, np.float32)) * np.float32(scale)).astype(np.float32)


def patches(padded_chw, ys, xs):
    """(N, C, P, P) patches centred (docs/ARCHITECTURE.md geometry) on pixels (ys, xs) of the
    unpadded image; `padded_chw` is the image padded A before, P-A-1 after."""
    v = np.lib.stride_tricks.sliding_window_view(padded_chw, (P, P), axis=(1, 2))  # C, H, W, P, P
    return np.ascontiguousarray(v[:, ys, xs].transpose(1, 0, 2, 3))


def predict_map(net, padded_chw, rows, cols, batch=256):
    """Probability of 'nuclei' for every pixel in rows x cols (the classifier on each patch)."""
    ys, xs = np.meshgrid(rows, cols, indexing="ij")
    ys, xs = ys.ravel(), xs.ravel()
    out = np.empty(len(ys), np.float32)
    for i in range(0, len(ys), batch):
        out[i:i + batch] = net.forward(patches(padded_chw, ys[i:i + batch], xs[i:i + batch]))[:, 1]
    return out.reshape(len(rows), len(cols))


def scores(prob, labels):
    pred = prob >= 0.5
    tp = np.sum(pred & labels)
    dice = 2.0 * tp / max(1, pred.sum() + labels.sum())
    return dict(accuracy=float(np.mean(pred == labels)), dice=float(dice),
                pixels=int(labels.size), nuclei_fraction=float(labels.mean()))


# ----------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------

def deploy_prototxt(spec):
    def conv(name, bottom, n):
        return (f'layer {{\n  name: "{name}"\n  type: "Convolution"\n  bottom: "{bottom}"\n  top: "{name}"\n'
                f'  convolution_param {{\n    num_output: {n}\n    kernel_size: 3\n    stride: 1\n  }}\n}}\n')

    def relu(name, blob):
        return f'layer {{\n  name: "{name}"\n  type: "ReLU"\n  bottom: "{blob}"\n  top: "{blob}"\n}}\n'

    def pool(name, bottom, k, s):
        return (f'layer {{\n  name: "{name}"\n  type: "Pooling"\n  bottom: "{bottom}"\n  top: "{name}"\n'
                f'  pooling_param {{\n    pool: MAX\n    kernel_size: {k}\n    stride: {s}\n  }}\n}}\n')

    def ip(name, bottom, n):
        return (f'layer {{\n  name: "{name}"\n  type: "InnerProduct"\n  bottom: "{bottom}"\n  top: "{name}"\n'
                f'  inner_product_param {{\n    num_output: {n}\n  }}\n}}\n')

    return ('name: "nuclei32"\ninput: "data"\ninput_shape {\n  dim: 1\n  dim: 3\n  dim: 32\n  dim: 32\n}\n'
            + conv("conv1", "data", spec["conv1"]) + relu("relu1", "conv1") + pool("pool1", "conv1", 4, 2)
            + conv("conv2", "pool1", spec["conv2"]) + relu("relu2", "conv2") + pool("pool2", "conv2", 2, 2)
            + ip("fc6", "pool2", spec["fc6"]) + relu("relu6", "fc6")
            + ip("fc7", "fc6", spec["fc7"]) + relu("relu7", "fc7")
            + ip("fc8", "fc7", spec["fc8"])
            + 'layer {\n  name: "prob"\n  type: "Softmax"\n  bottom: "fc8"\n  top: "prob"\n}\n')


def find_coordinator(given):
    if given:
        return given
    for candidate in (os.path.join(REPO, ".build", "release", "tessera-coordinator"),
                      os.path.join(REPO, ".build-demo", "release", "tessera-coordinator")):
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("tessera-coordinator")
    if found:
        return found
    sys.exit("tessera-coordinator not found: build it (swift build -c release) or pass --coordinator")


# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=os.path.join(REPO, "examples", "ihc.png"))
    ap.add_argument("--work", default=os.path.join(HERE, "work"),
                    help="scratch folder: labels, maps, .npy blobs (default: %(default)s)")
    ap.add_argument("--out", default=os.path.join(REPO, "models", "demo"),
                    help="where deploy.prototxt, nuclei32.caffemodel and REPORT.md go")
    ap.add_argument("--coordinator", help="tessera-coordinator binary (default: the repo's release build)")
    ap.add_argument("--no-convert", action="store_true", help="stop after writing the .npy blobs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--per-epoch", type=int, default=12000, help="balanced patches per epoch")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--scale", type=float, default=1 / 64)
    args = ap.parse_args()

    t_start = time.time()
    os.makedirs(args.work, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    rgb = skimage.io.imread(args.image)[..., :3]
    h, w = rgb.shape[:2]
    labels, threshold = classical_labels(rgb)
    skimage.io.imsave(os.path.join(args.work, "labels.png"), (labels * 255).astype(np.uint8), check_contrast=False)

    bgr = rgb[..., ::-1]
    train_rows = slice(0, HELD_OUT_ROW - GUARD)
    mean = np.round(bgr[train_rows].reshape(-1, 3).mean(0)).astype(int)  # integer B,G,R means of the training rows
    x = preprocess(bgr, mean, args.scale)
    padded = np.pad(x, ((A, B_AFTER), (A, B_AFTER), (0, 0)), mode="symmetric").transpose(2, 0, 1).copy()

    # Training pixels: rows 0 .. HELD_OUT_ROW-GUARD-1 (their patches end above the held-out rows).
    ty, tx = np.nonzero(np.ones((HELD_OUT_ROW - GUARD, w), bool))
    pos = np.nonzero(labels[ty, tx])[0]
    neg = np.nonzero(~labels[ty, tx])[0]
    print(f"image {w}x{h}, Otsu threshold {threshold:.5f} on the smoothed hematoxylin channel, "
          f"nuclei {labels.mean():.1%}; training pixels {len(ty)} ({len(pos)} nuclei), "
          f"held out rows {HELD_OUT_ROW}-{h - 1}; mean B,G,R = {','.join(map(str, mean))}", flush=True)

    net = Net(rng)
    opt = Adam(net.params, args.lr)
    steps_per_epoch = args.per_epoch // args.batch
    for epoch in range(args.epochs):
        lr = args.lr * (0.5 ** max(0, epoch - args.epochs // 2))   # constant, then halved each epoch
        opt.lr = lr
        half = args.per_epoch // 2
        idx = np.concatenate([rng.choice(pos, half), rng.choice(neg, half)])
        idx = idx[rng.permutation(len(idx))]
        cls = labels[ty[idx], tx[idx]].astype(np.int64)
        loss_sum, correct = 0.0, 0
        t0 = time.time()
        for s in range(steps_per_epoch):
            b = idx[s * args.batch:(s + 1) * args.batch]
            yb = cls[s * args.batch:(s + 1) * args.batch]
            xb = patches(padded, ty[b], tx[b])
            z, cache = net.forward(xb, train=True)
            pr = softmax(z)
            loss_sum += float(-np.log(pr[np.arange(len(yb)), yb] + 1e-12).sum())
            correct += int((pr.argmax(1) == yb).sum())
            dz = pr
            dz[np.arange(len(yb)), yb] -= 1
            dz /= len(yb)
            opt.step(net.params, net.backward(dz.astype(np.float32), cache))
        n = steps_per_epoch * args.batch
        print(f"epoch {epoch + 1}/{args.epochs}: lr {lr:.2e} loss {loss_sum / n:.4f} "
              f"balanced train acc {correct / n:.4f} ({time.time() - t0:.0f} s)", flush=True)
    train_seconds = time.time() - t_start

    # Evaluation: the classifier on every held-out pixel's patch.
    held = predict_map(net, padded, np.arange(HELD_OUT_ROW, h), np.arange(w))
    held_scores = scores(held, labels[HELD_OUT_ROW:])
    print(f"held-out rows {HELD_OUT_ROW}-{h - 1}: accuracy {held_scores['accuracy']:.4f}, "
          f"Dice (nuclei, p >= 0.5) {held_scores['dice']:.4f}", flush=True)
    # The held-out part of the (C, H, W) map, to compare with Tessera's output rows 384-511.
    np.save(os.path.join(args.work, "heldout-prob.npy"), np.stack([1 - held, held]).astype(np.float32))
    skimage.io.imsave(os.path.join(args.work, "heldout-prob.png"), np.round(held * 255).astype(np.uint8),
                      check_contrast=False)
    # Training rows: a sample of pixels (the whole region takes minutes on 2 cores).
    sample = rng.choice(len(ty), 20000, replace=False)
    sy, sx = ty[sample], tx[sample]
    train_prob = np.concatenate([net.forward(patches(padded, sy[i:i + 256], sx[i:i + 256]))[:, 1]
                                 for i in range(0, len(sy), 256)])
    train_scores = scores(train_prob, labels[sy, sx])

    # Export: .npy blobs named <layer>.<blobIndex>.npy and the deploy prototxt.
    blobs = os.path.join(args.work, "blobs")
    os.makedirs(blobs, exist_ok=True)
    for k, v in net.params.items():
        np.save(os.path.join(blobs, k + ".npy"), v.astype("<f4"))
    proto = os.path.join(args.work, "deploy.prototxt")
    with open(proto, "w") as f:
        f.write(deploy_prototxt(net.spec))

    result = dict(seed=args.seed, epochs=args.epochs, per_epoch=args.per_epoch, batch=args.batch, lr=args.lr,
                  architecture=net.spec, mean_bgr=[int(m) for m in mean], scale=args.scale,
                  otsu_threshold=threshold, held_out=held_scores, train_region=train_scores,
                  train_seconds=round(train_seconds, 1), total_seconds=round(time.time() - t_start, 1))
    with open(os.path.join(args.work, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))

    if args.no_convert:
        return
    os.makedirs(args.out, exist_ok=True)
    cmd = [find_coordinator(args.coordinator), "convert", "--model", proto, "--weights-npy", blobs,
           "--keep-classifier", "--out-model", os.path.join(args.out, "deploy.prototxt"),
           "--out-weights", os.path.join(args.out, "nuclei32.caffemodel")]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    shutil.copyfile(os.path.join(args.work, "labels.png"), os.path.join(args.out, "classical-labels.png"))
    shutil.copyfile(os.path.join(args.work, "result.json"), os.path.join(args.out, "training-result.json"))


if __name__ == "__main__":
    main()
