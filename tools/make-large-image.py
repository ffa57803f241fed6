#!/usr/bin/env python3
"""Make a large test image by mirror-tiling examples/ihc.png (512x512).

    python3 tools/make-large-image.py OUT.png [--size 2048] [--source examples/ihc.png]

Tile (i, j) of the output is the source flipped vertically when i is odd and
horizontally when j is odd, so neighbouring tiles meet edge to edge without
seams (the same symmetric reflection as the map's border padding). The result
is cropped to --size x --size (default 2048; 8192 for the large benchmark).
The output is not committed: regenerate it when needed.

Needs NumPy and Pillow (both in tools/train-demo-model/requirements.txt). Rows
are written by Pillow in one go; an 8192x8192 RGB image takes 200 MB of memory.
"""

import argparse
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def mirror_tile(src, size):
    h, w = src.shape[:2]
    reps_y, reps_x = -(-size // h), -(-size // w)
    rows = []
    for i in range(reps_y):
        tile_row = src[::-1] if i % 2 else src
        row = [tile_row[:, ::-1] if j % 2 else tile_row for j in range(reps_x)]
        rows.append(np.concatenate(row, axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:size, :size])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output PNG path")
    ap.add_argument("--size", type=int, default=2048, help="width and height in pixels (default 2048)")
    ap.add_argument("--source", default=os.path.normpath(os.path.join(HERE, "..", "examples", "ihc.png")))
    args = ap.parse_args()
    if args.size <= 0:
        ap.error("--size must be positive")
    src = np.asarray(Image.open(args.source).convert("RGB"))
    big = mirror_tile(src, args.size)
    Image.fromarray(big).save(args.out, compress_level=1)
    print(f"wrote {args.out}: {big.shape[1]}x{big.shape[0]} from {args.source}")


if __name__ == "__main__":
    main()
