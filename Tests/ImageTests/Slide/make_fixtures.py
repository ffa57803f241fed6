"""Writes the test images of SlideSourcesTests into a directory, with the pixels a reader must return.

Usage: make_fixtures.py OUTDIR. Writes OUTDIR/manifest.json: for every fixture its file and, per level, a raw
file of the expected samples (HWC, native byte order, uint8 or uint16), and the tolerance (0 for lossless
codecs; for JPEG the expected pixels are tifffile+imagecodecs' decoding of the same file). Bad files list the
error kind they must raise. Everything is generated from fixed seeds: no downloads.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import tifffile

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
manifest = {}
rng = np.random.RandomState(1234)


def noise(h, w, c, dtype=np.uint8):
    top = 65536 if dtype == np.uint16 else 256
    shape = (h, w) if c == 1 else (h, w, c)
    return rng.randint(0, top, shape).astype(dtype)


def smooth(h, w):
    """A smooth RGB picture (JPEG-friendly): gradients and blobs."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 23.0) * np.cos(y / 31.0)
    g = 128 + 90 * np.cos((x + y) / 40.0)
    b = 60 + 0.5 * x % 190
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def expected_channels(a, channels):
    if a.ndim == 2:
        return a
    return a[..., :channels] if channels > 1 else a[..., 0]


def save_expected(name, level, a):
    raw = f"{name}.level{level}.raw"
    np.ascontiguousarray(a).tofile(os.path.join(out, raw))
    h, w = a.shape[:2]
    return {"raw": raw, "height": h, "width": w, "channels": 1 if a.ndim == 2 else a.shape[2],
            "bits": 16 if a.dtype == np.uint16 else 8}


def decoded_levels(path):
    """Every level of the file's first series as tifffile decodes it."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return [level.asarray() for level in series.levels]


def add(name, file, levels, channels, tolerance=0, extra=None):
    entry = {"file": file, "tolerance": tolerance,
             "levels": [save_expected(name, i, expected_channels(a, channels)) for i, a in enumerate(levels)]}
    entry.update(extra or {})
    manifest[name] = entry


def write_pyramid(path, levels, bigtiff=False, subifds=False, **options):
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as writer:
        if subifds:
            writer.write(levels[0], subifds=len(levels) - 1, **options)
            for level in levels[1:]:
                writer.write(level, subfiletype=1, **options)
        else:
            writer.write(levels[0], **options)
            for level in levels[1:]:
                writer.write(level, subfiletype=1, **options)


# Lossless codecs, RGB 8-bit, tiled, 3 levels (successive reduced-resolution IFDs), edge tiles partial.
base = noise(200, 300, 3)
pyramid = [base, base[::2, ::2].copy(), base[::4, ::4].copy()]
for codec in ["none", "lzw", "zlib", "packbits", "zstd", "lzma"]:
    name = f"rgb8_tiled_{codec}"
    write_pyramid(os.path.join(out, name + ".tif"), pyramid, tile=(64, 48), compression=codec,
                  photometric="rgb", resolution=(40000, 40000), resolutionunit="CENTIMETER")
    add(name, name + ".tif", pyramid, 3)

# Pyramid in SubIFDs, BigTIFF.
write_pyramid(os.path.join(out, "rgb8_subifds_big.tif"), pyramid, bigtiff=True, subifds=True, tile=(64, 64),
              compression="zlib", photometric="rgb")
add("rgb8_subifds_big", "rgb8_subifds_big.tif", pyramid, 3)

# RGBA (alpha dropped), gray+alpha, 16-bit RGB, 16-bit gray striped, gray striped, MinIsWhite, BigTIFF.
rgba = noise(90, 110, 4)
tifffile.imwrite(os.path.join(out, "rgba8_tiled.tif"), rgba, tile=(32, 32), compression="zlib",
                 photometric="rgb", extrasamples=["unassalpha"])
add("rgba8_tiled", "rgba8_tiled.tif", [rgba], 3)
gray_alpha = noise(70, 50, 2)
tifffile.imwrite(os.path.join(out, "grayalpha8_striped.tif"), gray_alpha, photometric="minisblack",
                 planarconfig="contig", extrasamples=["unassalpha"], rowsperstrip=16, compression="lzw")
add("grayalpha8_striped", "grayalpha8_striped.tif", [gray_alpha], 1)
rgb16 = noise(100, 120, 3, np.uint16)
tifffile.imwrite(os.path.join(out, "rgb16_tiled.tif"), rgb16, tile=(48, 32), compression="zlib", photometric="rgb")
add("rgb16_tiled", "rgb16_tiled.tif", [rgb16], 3)
gray16 = noise(77, 93, 1, np.uint16)
tifffile.imwrite(os.path.join(out, "gray16_striped.tif"), gray16, rowsperstrip=10, photometric="minisblack")
add("gray16_striped", "gray16_striped.tif", [gray16], 1)
gray8 = noise(101, 67, 1)
tifffile.imwrite(os.path.join(out, "gray8_striped.tif"), gray8, rowsperstrip=7, compression="lzw",
                 photometric="minisblack")
add("gray8_striped", "gray8_striped.tif", [gray8], 1)
tifffile.imwrite(os.path.join(out, "gray8_miniswhite.tif"), gray8, tile=(32, 32), photometric="miniswhite")
add("gray8_miniswhite", "gray8_miniswhite.tif", [255 - gray8], 1)
# Planar (PlanarConfiguration 2): RGB tiled, RGBA striped (the alpha plane is skipped).
planar = noise(3, 90, 100)
tifffile.imwrite(os.path.join(out, "rgb8_planar_tiled.tif"), planar, tile=(32, 32), compression="zlib",
                 photometric="rgb", planarconfig="separate")
add("rgb8_planar_tiled", "rgb8_planar_tiled.tif", [planar.transpose(1, 2, 0)], 3)
planar16 = noise(4, 45, 61, np.uint16)
tifffile.imwrite(os.path.join(out, "rgba16_planar_striped.tif"), planar16, rowsperstrip=8, compression="lzw",
                 photometric="rgb", planarconfig="separate", extrasamples=["unassalpha"])
add("rgba16_planar_striped", "rgba16_planar_striped.tif", [planar16.transpose(1, 2, 0)], 3)
rgb_big = noise(130, 150, 3)
tifffile.imwrite(os.path.join(out, "rgb8_bigtiff.tif"), rgb_big, bigtiff=True, tile=(64, 64), compression="zlib",
                 photometric="rgb")
add("rgb8_bigtiff", "rgb8_bigtiff.tif", [rgb_big], 3)
# Deflate with the horizontal predictor (libvips' default), striped with a short last strip, big-endian, and
# 16-bit: the deflate streams' Adler-32 is checked from the decoded bytes (DeflateIntegrityTests). Their own
# generator, so that the fixtures above keep their pixels.
more = np.random.RandomState(99)
pred8 = more.randint(0, 256, (75, 90, 3)).astype(np.uint8)
tifffile.imwrite(os.path.join(out, "rgb8_striped_zlib_pred.tif"), pred8, rowsperstrip=16, compression="zlib",
                 predictor=True, photometric="rgb")
add("rgb8_striped_zlib_pred", "rgb8_striped_zlib_pred.tif", [pred8], 3)
tifffile.imwrite(os.path.join(out, "rgb8_tiled_zlib_pred_be.tif"), pred8, tile=(32, 48), compression="zlib",
                 predictor=True, photometric="rgb", byteorder=">")
add("rgb8_tiled_zlib_pred_be", "rgb8_tiled_zlib_pred_be.tif", [pred8], 3)
pred16 = more.randint(0, 65536, (70, 50, 3)).astype(np.uint16)
tifffile.imwrite(os.path.join(out, "rgb16_tiled_zlib_pred.tif"), pred16, tile=(32, 32), compression="zlib",
                 predictor=True, photometric="rgb")
add("rgb16_tiled_zlib_pred", "rgb16_tiled_zlib_pred.tif", [pred16], 3)

# JPEG: YCbCr (tifffile, 2×2 subsampling), RGB, and YCbCr with shared JPEGTables (tiffcp, as libtiff writes).
picture = smooth(180, 260)
tifffile.imwrite(os.path.join(out, "jpeg_ycbcr.tif"), picture, tile=(64, 64), compression="jpeg",
                 photometric="ycbcr")
add("jpeg_ycbcr", "jpeg_ycbcr.tif", decoded_levels(os.path.join(out, "jpeg_ycbcr.tif")), 3, tolerance=1)
tifffile.imwrite(os.path.join(out, "jpeg_rgb.tif"), picture, tile=(64, 64), compression="jpeg", photometric="rgb")
add("jpeg_rgb", "jpeg_rgb.tif", decoded_levels(os.path.join(out, "jpeg_rgb.tif")), 3, tolerance=1)
tifffile.imwrite(os.path.join(out, "plain.tif"), picture, tile=(64, 64), photometric="rgb")
subprocess.run(["tiffcp", "-c", "jpeg:90", os.path.join(out, "plain.tif"), os.path.join(out, "jpeg_tables.tif")],
               check=True)
add("jpeg_tables", "jpeg_tables.tif", decoded_levels(os.path.join(out, "jpeg_tables.tif")), 3, tolerance=1)

# Aperio-like SVS: JPEG RGB tiles with JPEGTables, a striped thumbnail as directory 1, the ¼ level as directory 2.
slide = smooth(768, 1024)
description = ("Aperio Image Library v12.0.15 \n1024x768 [0,0 1024x768] (256x256) JPEG/RGB Q=90"
               "|AppMag = 40|MPP = 0.25")
with tifffile.TiffWriter(os.path.join(out, "svs_plain.tif")) as writer:
    writer.write(slide, tile=(256, 256), photometric="rgb", description=description, metadata=None)
    writer.write(slide[::8, ::8].copy(), photometric="rgb", rowsperstrip=16, metadata=None,
                 description="Aperio Image Library v12.0.15 \n1024x768 -> 128x96 - |AppMag = 40|MPP = 0.25")
    writer.write(slide[::4, ::4].copy(), tile=(256, 256), photometric="rgb", metadata=None,
                 description="Aperio Image Library v12.0.15 \n1024x768 -> 256x192 - |AppMag = 40|MPP = 0.25")
svs_path = os.path.join(out, "slide.svs")
plain_path = os.path.join(out, "svs_plain.tif")
subprocess.run(["tiffcp", "-c", "jpeg:r:90", "-t", plain_path + ",0", svs_path], check=True)
subprocess.run(["tiffcp", "-a", "-c", "jpeg:r:90", "-s", "-r", "16", plain_path + ",1", svs_path], check=True)
subprocess.run(["tiffcp", "-a", "-c", "jpeg:r:90", "-t", plain_path + ",2", svs_path], check=True)
with tifffile.TiffFile(os.path.join(out, "slide.svs")) as tif:
    svs_levels = [tif.pages[0].asarray(), tif.pages[2].asarray()]
add("svs", "slide.svs", svs_levels, 3, tolerance=1, extra={"mpp": [0.25, 1.0]})

# The same slide with its thumbnail tiled: OpenSlide detects "aperio" but refuses to open it (its tiled
# directories are levels, and the ⅛ one comes before the ¼ one); Tessera reads it with libtiff instead.
unopenable = os.path.join(out, "unopenable.svs")
subprocess.run(["tiffcp", "-c", "jpeg:r:90", "-t", plain_path + ",0", unopenable], check=True)
subprocess.run(["tiffcp", "-a", "-c", "jpeg:r:90", "-t", plain_path + ",1", unopenable], check=True)
subprocess.run(["tiffcp", "-a", "-c", "jpeg:r:90", "-t", plain_path + ",2", unopenable], check=True)

# Bad files.
bad = {}


def chunk(path, index, page=0):
    with tifffile.TiffFile(path) as tif:
        p = tif.pages[page]
        return int(p.dataoffsets[index]), int(p.databytecounts[index])


def damage(source, target, index, flip):
    shutil.copy(os.path.join(out, source), os.path.join(out, target))
    offset, count = chunk(os.path.join(out, target), index)
    with open(os.path.join(out, target), "r+b") as f:
        f.seek(offset + count // 2)
        data = bytearray(f.read(flip))
        f.seek(offset + count // 2)
        f.write(bytes(b ^ 0xFF for b in data))


def cut_in_directory(source, target, page):
    """`source` cut 10 bytes into directory `page` (its IFD), losing that directory and every later one."""
    with tifffile.TiffFile(os.path.join(out, source)) as tif:
        end = tif.pages[page].offset + 10
    with open(os.path.join(out, source), "rb") as f:
        data = f.read(end)
    with open(os.path.join(out, target), "wb") as f:
        f.write(data)


# Slides cut short inside directory 2 (the ¼ level): OpenSlide (cut_slide.svs) and libtiff (cut_unopenable.svs,
# whose tiled thumbnail OpenSlide would refuse) see the levels before it only.
cut_in_directory("slide.svs", "cut_slide.svs", 2)
cut_in_directory("unopenable.svs", "cut_unopenable.svs", 2)

# Corrupt tile 5 (row 1, column 0 of a 260-wide image in 64² tiles: 5 tiles across).
damage("jpeg_rgb.tif", "bad_jpeg_tile.tif", 5, 64)
bad["bad_jpeg_tile"] = {"file": "bad_jpeg_tile.tif", "kind": "corruptTile", "tile": 5}
damage("jpeg_tables.tif", "bad_jpeg_tables_tile.tif", 5, 64)
bad["bad_jpeg_tables_tile"] = {"file": "bad_jpeg_tables_tile.tif", "kind": "corruptTile", "tile": 5}
damage("slide.svs", "bad_tile.svs", 5, 64)
bad["bad_svs_tile"] = {"file": "bad_tile.svs", "kind": "corruptTile"}
damage("rgb8_tiled_zlib.tif", "bad_zlib_tile.tif", 3, 32)
bad["bad_zlib_tile"] = {"file": "bad_zlib_tile.tif", "kind": "corruptTile", "tile": 3}
# Truncated: tifffile writes the directory first, so the tiles at the end are missing; libtiff (tiffcp) writes
# it last, so the directory itself is lost.
with open(os.path.join(out, "rgb8_bigtiff.tif"), "rb") as f:
    data = f.read()
with open(os.path.join(out, "truncated_tiles.tif"), "wb") as f:
    f.write(data[: len(data) * 2 // 3])
bad["truncated_tiles"] = {"file": "truncated_tiles.tif", "kind": "truncated", "tile": -1}
with open(os.path.join(out, "jpeg_tables.tif"), "rb") as f:
    data = f.read()
with open(os.path.join(out, "truncated_directory.tif"), "wb") as f:
    f.write(data[: len(data) // 2])
bad["truncated_directory"] = {"file": "truncated_directory.tif", "kind": "truncated", "at": "open"}
tifffile.imwrite(os.path.join(out, "jpeg2000.tif"), picture, tile=(64, 64), compression="jpeg2000")
bad["jpeg2000"] = {"file": "jpeg2000.tif", "kind": "unsupportedCompression", "at": "open"}
tifffile.imwrite(os.path.join(out, "float32.tif"), rng.rand(40, 40).astype(np.float32), tile=(16, 16))
bad["float32"] = {"file": "float32.tif", "kind": "unsupportedSampleFormat", "at": "open"}
with open(os.path.join(out, "not_a_tiff.tif"), "w") as f:
    f.write("this is not an image\n" * 10)
bad["not_a_tiff"] = {"file": "not_a_tiff.tif", "kind": "notTIFF", "at": "open"}

# A small tiled TIFF for the fuzz test (both a lossless and a JPEG one).
tifffile.imwrite(os.path.join(out, "fuzz_zlib.tif"), noise(80, 96, 3), tile=(32, 32), compression="zlib",
                 photometric="rgb")
tifffile.imwrite(os.path.join(out, "fuzz_jpeg.tif"), smooth(80, 96), tile=(32, 32), compression="jpeg",
                 photometric="ycbcr")

# Tissue: a white slide with two coloured blobs (pink and purple, as H&E) and faint grey noise.
h, w = 600, 800
y, x = np.mgrid[0:h, 0:w]
tissue = np.full((h, w, 3), 240, np.float64) + rng.normal(0, 2, (h, w, 3))
blob1 = (y - 150) ** 2 / 80.0 ** 2 + (x - 200) ** 2 / 120.0 ** 2 < 1
blob2 = (y - 420) ** 2 / 100.0 ** 2 + (x - 600) ** 2 / 90.0 ** 2 < 1
tissue[blob1] = [230, 140, 190]
tissue[blob2] = [150, 90, 180]
tissue = np.clip(tissue + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)
write_pyramid(os.path.join(out, "tissue.tif"), [tissue, tissue[::4, ::4].copy()], tile=(64, 64), compression="zlib",
              photometric="rgb")
manifest["tissue_blobs"] = {"file": "tissue.tif", "blobs": [[150, 200, 80, 120], [420, 600, 100, 90]]}

for scratch in ["svs_plain.tif", "plain.tif"]:
    os.remove(os.path.join(out, scratch))
with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump({"good": manifest, "bad": bad}, f, indent=1)
