#!/usr/bin/env python3
"""Writes a large sparse whole-slide-like pyramidal BigTIFF for benchmarks: white
background with a few stained tissue islands, JPEG tiles, levels ÷2 down to ~2000 px.

Usage: make-large-slide.py OUT.tif [SIDE] [ISLANDS]   (default 60000 px, 4 islands)
Tiles are generated one at a time from a formula (islands with seeded texture), so
memory stays small whatever the size. Needs numpy, tifffile and imagecodecs.
"""
import argparse
import math

import numpy as np
import tifffile

TILE = 512


def islands(side, count):
    rng = np.random.RandomState(42)
    out = []
    for _ in range(count):
        r = side * rng.uniform(0.02, 0.035)
        cy, cx = rng.uniform(r, side - r, 2)
        colour = np.array([rng.uniform(120, 200), rng.uniform(40, 110), rng.uniform(120, 190)])
        out.append((cy, cx, r, colour))
    return out


def tiles(side, scale, spots):
    """Tiles (row-major) of the level `scale` times smaller than level 0."""
    h = w = math.ceil(side / scale)
    white = np.full((TILE, TILE, 3), 243, np.uint8)
    for ty in range(0, h, TILE):
        for tx in range(0, w, TILE):
            y0, x0 = ty * scale, tx * scale
            span = TILE * scale
            near = [s for s in spots if y0 - s[2] < s[0] < y0 + span + s[2] and x0 - s[2] < s[1] < x0 + span + s[2]]
            if not near:
                yield white
                continue
            yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float64)
            yy, xx = y0 + yy * scale, x0 + xx * scale
            tile = white.astype(np.float64)
            for cy, cx, r, colour in near:
                d = np.hypot(yy - cy, xx - cx) / r
                inside = d < 1
                # Texture: nuclei-like dots from a fixed pattern.
                dots = (np.sin(yy / 7.0) * np.cos(xx / 9.0) > 0.7)
                tint = colour * (1 - 0.35 * dots[..., None])
                tile[inside] = tint[inside]
            yield np.clip(tile, 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", metavar="OUT.tif", help="output BigTIFF path")
    ap.add_argument("side", metavar="SIDE", type=int, nargs="?", default=60000,
                    help="width and height of level 0 in pixels (default 60000)")
    ap.add_argument("count", metavar="ISLANDS", type=int, nargs="?", default=4,
                    help="number of tissue islands (default 4)")
    args = ap.parse_args()
    if args.side <= 0:
        ap.error("SIDE must be a positive number of pixels")
    if args.count < 0:
        ap.error("ISLANDS must not be negative")
    path, side, count = args.out, args.side, args.count
    spots = islands(side, count)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        scale = 1
        while True:
            n = math.ceil(side / scale)
            tif.write(tiles(side, scale, spots), shape=(n, n, 3), dtype=np.uint8, tile=(TILE, TILE),
                      photometric="rgb", compression="jpeg", compressionargs={"level": 90},
                      subfiletype=0 if scale == 1 else 1, resolution=(40000 / scale, 40000 / scale),
                      resolutionunit="CENTIMETER", metadata=None)
            if n <= 2048:
                break
            scale *= 2
    area = sum(math.pi * r * r for _, _, r, _ in spots) / side / side
    print(f"{path}: {side}x{side}, {count} islands, tissue ≈ {100 * area:.2f}% of the area")


if __name__ == "__main__":
    main()
