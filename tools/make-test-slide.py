#!/usr/bin/env python3
"""Writes the same pixels as the slide formats Tessera reads, for tests and benchmarks.

Usage: make-test-slide.py INPUT.png OUTDIR
Writes, from the RGB pixels of INPUT.png:
  OUTDIR/tiled.tif     generic tiled TIFF, deflate (lossless), 2 levels (the second reduced-flagged): libtiff path
  OUTDIR/slide.svs     Aperio-style SVS, JPEG tiles with shared tables, MPP 0.25, a 1/4 level: OpenSlide path
  OUTDIR/slide-decoded.png  level 0 of slide.svs as tifffile + imagecodecs decode it (an independent decoder)
Generated on the fly, nothing downloaded. Needs numpy, tifffile, imagecodecs and libtiff's tiffcp.
"""
import argparse
import os
import subprocess

import numpy as np
import tifffile


def read_png_rgb(path):
    import imagecodecs
    data = open(path, "rb").read()
    a = imagecodecs.png_decode(data)
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    return np.ascontiguousarray(a[..., :3])


def write_png(path, a):
    import imagecodecs
    open(path, "wb").write(imagecodecs.png_encode(a))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", metavar="INPUT.png", help="PNG whose RGB pixels the slides hold")
    ap.add_argument("out", metavar="OUTDIR", help="folder to write tiled.tif, slide.svs and slide-decoded.png in")
    args = ap.parse_args()
    src, out = args.src, args.out
    if not os.path.isfile(src):
        ap.error(f"no such file: {src}")
    os.makedirs(out, exist_ok=True)
    image = read_png_rgb(src)
    h, w = image.shape[:2]
    with tifffile.TiffWriter(os.path.join(out, "tiled.tif")) as tif:
        tif.write(image, tile=(128, 128), compression="zlib", photometric="rgb")
        tif.write(image[::2, ::2].copy(), tile=(128, 128), compression="zlib", photometric="rgb", subfiletype=1)
    head = f"Aperio Image Library v12.0.15 \n{w}x{h} [0,0 {w}x{h}] (256x256) JPEG/RGB Q=90|AppMag = 40|MPP = 0.25"
    plain = os.path.join(out, "svs-plain.tif")
    with tifffile.TiffWriter(plain) as tif:
        tif.write(image, tile=(256, 256), photometric="rgb", description=head, metadata=None)
        thumb = image[::8, ::8].copy()
        tif.write(thumb, photometric="rgb", rowsperstrip=16, metadata=None,
                  description=f"Aperio Image Library v12.0.15 \n{w}x{h} -> {thumb.shape[1]}x{thumb.shape[0]} - "
                              "|AppMag = 40|MPP = 0.25")
        quarter = image[::4, ::4].copy()
        tif.write(quarter, tile=(256, 256), photometric="rgb", metadata=None,
                  description=f"Aperio Image Library v12.0.15 \n{w}x{h} -> {quarter.shape[1]}x{quarter.shape[0]} - "
                              "|AppMag = 40|MPP = 0.25")
    svs = os.path.join(out, "slide.svs")
    # JPEG in RGB (not YCbCr), as Aperio writes it; the striped thumbnail stays striped.
    subprocess.run(["tiffcp", "-c", "jpeg:r:90", "-t", plain + ",0", svs], check=True)
    subprocess.run(["tiffcp", "-a", "-c", "jpeg:r:90", "-s", "-r", "16", plain + ",1", svs], check=True)
    subprocess.run(["tiffcp", "-a", "-c", "jpeg:r:90", "-t", plain + ",2", svs], check=True)
    os.remove(plain)
    with tifffile.TiffFile(svs) as tif:
        decoded = tif.pages[0].asarray()
    write_png(os.path.join(out, "slide-decoded.png"), np.ascontiguousarray(decoded[..., :3]))


if __name__ == "__main__":
    main()
