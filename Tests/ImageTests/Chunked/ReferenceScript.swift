/// The Python reference reader the tests run (zarr, ome_zarr, tifffile, NumPy).
/// It recomputes the expected map from the raw float32 input independently of
/// the Swift code: quantisation with NumPy (halves away from zero, clamp, NaN → 0;
/// float16 by astype), the pyramid as 2×2 means in float32 over existing pixels in
/// the order ((a + b) + (c + d)) × 0.25 on the unquantised values, skipped tiles as
/// the fill value; then compares every level of the store and of the TIFF exactly.
let referenceScript = #"""
    import json, sys, warnings
    import numpy as np

    warnings.simplefilter("ignore")
    spec = json.load(open(sys.argv[1]))

    def fail(msg):
        print("REFERENCE FAILURE: " + msg, file=sys.stderr)
        sys.exit(1)

    def quantise(x, dtype):
        if dtype == "float32":
            return x.astype(np.float32)
        if dtype == "float16":
            return x.astype(np.float16)
        scale = np.float32(255 if dtype == "uint8" else 65535)
        with np.errstate(invalid="ignore"):
            y = np.where(x > 0, np.minimum(x, np.float32(1)) * scale, np.float32(0)).astype(np.float32)
        f = np.floor(y)
        r = np.where(y - f >= np.float32(0.5), f + np.float32(1), f)
        return r.astype(np.uint8 if dtype == "uint8" else np.uint16)

    def down(x):
        c, h, w = x.shape
        he, we = h // 2, w // 2
        out = np.empty((c, (h + 1) // 2, (w + 1) // 2), np.float32)
        a, b = x[:, 0:2 * he:2, 0:2 * we:2], x[:, 0:2 * he:2, 1:2 * we:2]
        cc, d = x[:, 1:2 * he:2, 0:2 * we:2], x[:, 1:2 * he:2, 1:2 * we:2]
        out[:, :he, :we] = ((a + b) + (cc + d)) * np.float32(0.25)
        if w % 2:
            out[:, :he, we] = (x[:, 0:2 * he:2, w - 1] + x[:, 1:2 * he:2, w - 1]) * np.float32(0.5)
        if h % 2:
            out[:, he, :we] = (x[:, h - 1, 0:2 * we:2] + x[:, h - 1, 1:2 * we:2]) * np.float32(0.5)
        if h % 2 and w % 2:
            out[:, he, we] = x[:, h - 1, w - 1]
        return out

    def compare(name, got, exp):
        if got.shape != exp.shape:
            fail(f"{name}: shape {got.shape}, expected {exp.shape}")
        if got.dtype != exp.dtype:
            fail(f"{name}: dtype {got.dtype}, expected {exp.dtype}")
        isfloat = exp.dtype.kind == "f"
        if not np.array_equal(got, exp, equal_nan=isfloat):
            bad = np.argwhere(~((got == exp) | (np.isnan(got) & np.isnan(exp)) if isfloat else (got == exp)))
            i = tuple(bad[0])
            fail(f"{name}: {len(bad)} values differ, first at {i}: {got[i]} vs expected {exp[i]}")

    def check_ome(path, levels, expect_image):
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Reader, Multiscales
        location = parse_url(path)
        if location is None:
            fail("ome_zarr cannot parse the store")
        nodes = list(Reader(location)())
        images = [n for n in nodes if any(isinstance(s, Multiscales) for s in n.specs)]
        if not expect_image:
            if images:
                fail("ome_zarr sees an image in an unfinished store")
            return
        if not images:
            fail("ome_zarr finds no multiscales image")
        node = images[0]
        if len(node.data) != levels:
            fail(f"ome_zarr sees {len(node.data)} levels, expected {levels}")
        axes = [a["name"] if isinstance(a, dict) else a for a in node.metadata.get("axes", [])]
        if axes != ["c", "y", "x"]:
            fail(f"ome_zarr axes {axes}")
        # Each plane is labelled with its class (viewers showed "channel 0/1").
        names = node.metadata.get("channel_names")
        want = [f"class {k}" for k in range(node.data[0].shape[0])]
        if names != want:
            fail(f"ome_zarr channel names {names}, expected {want}")
        return [tuple(d.shape) for d in node.data]

    def ome_info(path):
        import subprocess
        run = subprocess.run(["ome_zarr", "info", path], capture_output=True, text=True, timeout=60)
        return run.returncode, run.stdout + run.stderr

    mode = spec["mode"]
    if mode == "unfinished":
        check_ome(spec["store"], 0, False)
        rc, text = ome_info(spec["store"])
        if rc != 0 or "Multiscales" in text:
            fail(f"ome_zarr info on an unfinished store (exit {rc}): {text}")
        print("OK")
        sys.exit(0)

    import zarr
    c, h, w = spec["shape"]
    tile, levels, dtype = spec["tile"], spec["levels"], spec["dtype"]
    x = np.fromfile(spec["input"], dtype="<f4").reshape(c, h, w)
    fill = np.nan if dtype.startswith("float") else 0
    group = zarr.open_group(spec["store"], mode="r")
    expected = []
    level = x
    for k in range(levels):
        if k > 0:
            level = down(level)
        exp = quantise(level, dtype)
        side = tile >> k
        for (r, col) in spec["skipped"]:
            exp[:, r * side:(r + 1) * side, col * side:(col + 1) * side] = fill
        expected.append(exp)
        compare(f"zarr level {k}", group[str(k)][...], exp)
        if spec.get("compressor"):
            got = json.load(open(f"{spec['store']}/{k}/.zarray"))["compressor"]
            if (got or {}).get("id") != spec["compressor"]:
                fail(f"level {k}: compressor {got}, expected {spec['compressor']}")

    shapes = check_ome(spec["store"], levels, True)
    if spec.get("ome_info"):
        rc, text = ome_info(spec["store"])
        listed = [tuple(int(n) for n in line.strip()[2:].strip("()").split(",")) for line in text.splitlines()
                  if line.strip().startswith("- (")]
        if rc != 0 or "Multiscales" not in text or listed != shapes:
            fail(f"ome_zarr info (exit {rc}) does not list the levels {shapes}: {text}")
    if shapes != [e.shape for e in expected]:
        fail(f"ome_zarr level shapes {shapes}")

    if spec.get("tiff"):
        import tifffile
        with tifffile.TiffFile(spec["tiff"]) as tf:
            if len(tf.series) != 1:
                fail(f"tifffile sees {len(tf.series)} series")
            series = tf.series[0]
            if len(series.levels) != spec["tiff_levels"]:
                fail(f"tifffile sees {len(series.levels)} levels, expected {spec['tiff_levels']}")
            for k, lv in enumerate(series.levels):
                a = lv.asarray()
                if c == 1:
                    a = a.reshape((1,) + a.shape)
                compare(f"tiff level {k}", a, expected[k])
            for k, page in enumerate(tf.pages):
                if bool(page.subfiletype & 1) != (k > 0):
                    fail(f"tiff page {k}: NewSubfileType {page.subfiletype}")
                # A map under 16 px on a side is in strips (no TIFF tile fits in it; OpenSlide misread such tiles).
                small = min(page.shape[-2:]) < 16
                if page.is_tiled == small:
                    fail(f"tiff page {k} ({page.shape}) is {'tiled' if page.is_tiled else 'in strips'}")
    if spec.get("tiff") and spec.get("openslide") and min(spec["shape"][1:]) < 16:
        import openslide
        try:
            openslide.OpenSlide(spec["tiff"])
            fail("OpenSlide opened a map in strips (it misreads what it opens of such maps)")
        except openslide.OpenSlideError:
            pass
    elif spec.get("tiff") and spec.get("openslide"):
        import openslide
        slide = openslide.OpenSlide(spec["tiff"])
        if slide.level_count != spec["tiff_levels"]:
            fail(f"OpenSlide sees {slide.level_count} levels, expected {spec['tiff_levels']}")
        dims = [(e.shape[2], e.shape[1]) for e in expected[:spec["tiff_levels"]]]
        if list(slide.level_dimensions) != dims:
            fail(f"OpenSlide level sizes {slide.level_dimensions}, expected {dims}")
        # Multi-class files: OpenSlide sees the levels but renders nothing (libtiff's RGBA
        # interface refuses planar gray with extra samples), so pixels are checked for 1 class.
        for k in range(slide.level_count if c == 1 else 0):
            rgba = np.asarray(slide.read_region((0, 0), k, dims[k]))
            if not np.array_equal(rgba[..., 0], expected[k][0]) or not (rgba[..., 3] == 255).all():
                fail(f"OpenSlide level {k} differs: {rgba[0, :4].tolist()} vs {expected[k][0, 0, :4].tolist()}")
    print("OK")
    """#
