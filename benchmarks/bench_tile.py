"""Benchmark ``geotiler tile`` against a raw read pass and the seed project's per-tile GeoTIFFs.

One big scene (the default): generates a ``--size`` x ``--size`` (``--height`` rows if given) x
10-band uint16 scene (tiled 512 px, deflate) and a uint8 mask, then measures each method in its
own subprocess on the same files: once to warm the OS cache, then ``--repeat`` rounds of timed
runs, the methods taking turns. Reported: the median rate, the load average at each run, the
subprocess's CPU time per tile over all its threads (steadier than wall time on a busy shared
machine), its peak RSS and its whole wall time, start-up included:

- ours: ``make_tiles`` (Zarr store, per-tile stats, splits), default settings;
- raw read: one pass over the scene and the mask in block-aligned full-width row bands, one thread
  (GDAL's default);
- seed: what the seed project did, a rasterio window read of image and mask per tile and one
  uncompressed GeoTIFF (GDAL's default) written per tile for each, on the first ``--seed-tiles``
  tiles (all by default), reported as a rate.

Many chips (``--chips N``): generates ``N`` JPEG chips of ``--chip-size`` px (3-band uint8,
class-coloured textured fields, quality 90: sizes like aerial chips') with PNG masks of 6 classes
(single-band ids, or RGB colours of the class table with ``--rgb-masks``) and a ``classes.json``,
then measures, the same way:

- ours: ``run_tile`` on the images and masks folders with ``--classes classes.json`` (pairing,
  planning, cutting, the store, splits), default settings, as ``geotiler tile`` runs it;
- PIL read: each JPEG and PNG decoded to numpy with PIL in one thread, nothing else.

Examples: ``python benchmarks/bench_tile.py --size 10000 --repeat 3``,
``python benchmarks/bench_tile.py --chips 2000 --repeat 3 [--rgb-masks]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.io import geotiff_profile
from geotiler.tiles.layout import tile_offsets
from geotiler.tiles.run import TileInputs, TileSettings, make_tiles

BANDS = 10
CHIP_CLASSES = {
    1: ("building", "#3c1098"),
    2: ("land", "#8429f6"),
    3: ("road", "#6ec1e4"),
    4: ("vegetation", "#fedd3a"),
    5: ("water", "#e2a929"),
    6: ("unlabeled", "#9b9b9b"),
}
CHIP_BASE = {1: (150, 140, 135), 2: (170, 150, 110), 3: (120, 120, 125), 4: (70, 100, 55),
             5: (40, 70, 95), 6: (110, 105, 100)}  # fmt: skip


def generate(folder: Path, size: int, height: int, seed: int = 0) -> tuple[Path, Path]:
    """A smooth-ish 10-band uint16 scene and a 12-class mask, written in row bands."""
    rng = np.random.default_rng(seed)
    transform = Affine(10, 0, 240000, 0, -10, 4780000)
    common = {"height": height, "width": size, "crs": "EPSG:32631", "transform": transform}
    scene = folder / "scene.tif"
    mask = folder / "mask.tif"
    band_rows = 512
    with (
        rasterio.open(scene, "w", **geotiff_profile(dtype="uint16", count=BANDS), **common) as s,
        rasterio.open(mask, "w", **geotiff_profile(dtype="uint8", nodata=0), **common) as m,
    ):
        x = np.arange(size, dtype=np.float32)
        for row in range(0, height, band_rows):
            rows = min(band_rows, height - row)
            y = np.arange(row, row + rows, dtype=np.float32)[:, None]
            base = 2000 + 1500 * np.sin(x / 97.0) * np.cos(y / 113.0)
            window = rasterio.windows.Window(0, row, size, rows)
            data = np.empty((BANDS, rows, size), np.uint16)
            for b in range(BANDS):
                noise = rng.integers(0, 200, (rows, size))
                data[b] = np.clip(base * (1 + 0.05 * b) + noise, 0, 65535)
            s.write(data, window=window)
            classes = (np.floor(x / 211.0) + np.floor(y / 173.0)) % 12 + 1
            m.write(classes.astype(np.uint8)[np.newaxis], window=window)
    return scene, mask


def ours(folder: Path, tile: int) -> int:
    """Tile the scene into a fresh store; the number of tiles stored."""
    table = ClassTable(
        name="bench",
        nodata=0,
        classes=tuple(ClassInfo(id=i, name=f"c{i}", color="#808080") for i in range(1, 13)),
    )
    inputs = TileInputs.seasons({"scene": folder / "scene.tif"}, folder / "mask.tif", table)
    return len(make_tiles(inputs, folder / "tiles.zarr", TileSettings(size=tile)))


def raw_read(folder: Path, tile: int) -> int:
    """Read the scene and the mask once in block-aligned full-width row bands; tiles covered."""
    for name in ("scene.tif", "mask.tif"):
        with rasterio.open(folder / name) as src:
            step = src.block_shapes[0][0] * max(1, 1024 // src.block_shapes[0][0])
            for row in range(0, src.height, step):
                src.read(
                    window=rasterio.windows.Window(0, row, src.width, min(step, src.height - row))
                )
    return len(tile_offsets(src.height, tile, tile)) * len(tile_offsets(src.width, tile, tile))


def seed(folder: Path, tile: int, limit: int) -> int:
    """Per-tile window reads and one uncompressed GeoTIFF per tile for image and mask; tiles."""
    out = folder / "seed"
    out.mkdir()
    done = 0
    with rasterio.open(folder / "scene.tif") as src, rasterio.open(folder / "mask.tif") as msk:
        positions = [
            (r, c)
            for r in tile_offsets(src.height, tile, tile)
            for c in tile_offsets(src.width, tile, tile)
        ]
        for row, col in positions[: limit or None]:
            window = rasterio.windows.Window(int(col), int(row), tile, tile)
            image, labels = src.read(window=window), msk.read(1, window=window)
            profile = {
                "driver": "GTiff",
                "height": tile,
                "width": tile,
                "crs": src.crs,
                "transform": src.window_transform(window),
            }
            with rasterio.open(
                out / f"img_{row}_{col}.tif", "w", count=src.count, dtype=src.dtypes[0], **profile
            ) as dst:
                dst.write(image)
            with rasterio.open(
                out / f"mask_{row}_{col}.tif", "w", count=1, dtype="uint8", **profile
            ) as dst:
                dst.write(labels, 1)
            done += 1
    return done


def generate_chips(folder: Path, count: int, side: int, rgb: bool, seed: int = 0) -> None:
    """``count`` JPEG chips with PNG masks (ids or RGB colours) and their ``classes.json``.

    Labels are smooth blobs (upsampled random class fields); each class has a base colour with
    coarse and fine texture and a light gradient, so the JPEGs compress like aerial imagery.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    ids = np.array(sorted(CHIP_CLASSES))
    base = np.array([CHIP_BASE[i] for i in ids], np.float32)
    colours = np.array([[int(CHIP_CLASSES[i][1][k : k + 2], 16) for k in (1, 3, 5)] for i in ids])
    ramp = np.linspace(-1, 1, side, dtype=np.float32)
    for n in range(count):
        fields = rng.random((len(ids), 6, 6)).astype(np.float32)
        smooth = np.stack(
            [np.asarray(Image.fromarray(f).resize((side, side), Image.BICUBIC)) for f in fields]
        )
        which = smooth.argmax(axis=0)
        coarse = rng.normal(0, 12, (3, side // 8, side // 8)).astype(np.float32)
        coarse = np.stack(
            [np.asarray(Image.fromarray(c).resize((side, side), Image.BILINEAR)) for c in coarse]
        )
        gradient = 15 * rng.uniform(-1, 1) * ramp[None, :] + 15 * rng.uniform(-1, 1) * ramp[:, None]
        pixels = base[which].transpose(2, 0, 1) + coarse + gradient
        pixels += rng.normal(0, 7, pixels.shape).astype(np.float32)
        image = pixels.clip(0, 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(image).save(images / f"chip_{n:05d}.jpg", quality=90)
        labels = ids[which].astype(np.uint8)
        mask = colours[which].astype(np.uint8) if rgb else labels
        Image.fromarray(mask).save(masks / f"chip_{n:05d}.png")
    table = {str(i): {"name": name, "color": colour} for i, (name, colour) in CHIP_CLASSES.items()}
    (folder / "classes.json").write_text(json.dumps(table))


def ours_chips(folder: Path) -> int:
    """``geotiler tile images/ --mask masks/ --classes classes.json -o tiles.zarr``; tiles."""
    from geotiler.tiles.run import run_tile

    settings = TileSettings(classes=str(folder / "classes.json"))
    store = run_tile(
        None,
        None,
        settings,
        images=[folder / "images"],
        masks=[folder / "masks"],
        output=folder / "tiles.zarr",
    )
    return len(store)


def pil_read(folder: Path) -> int:
    """Decode every chip and its mask to numpy with PIL in one thread; chips read."""
    from PIL import Image

    done = 0
    for image in sorted((folder / "images").glob("*.jpg")):
        with Image.open(image) as chip, Image.open(folder / "masks" / f"{image.stem}.png") as mask:
            np.asarray(chip)
            np.asarray(mask)
        done += 1
    return done


def child(method: str, folder: Path, tile: int, limit: int) -> None:
    """Run one method in this process and print tiles, seconds, CPU seconds (every thread's) and
    peak RSS as JSON."""
    for previous in (folder / "tiles.zarr", folder / "seed"):  # the last run's output, untimed
        shutil.rmtree(previous, ignore_errors=True)
    os.sync()  # and its writes flushed, so they do not land in this run's time
    chips = (folder / "classes.json").exists()
    start, cpu = time.perf_counter(), _cpu_seconds()
    if method == "ours":
        tiles = ours_chips(folder) if chips else ours(folder, tile)
    elif method == "pil":
        tiles = pil_read(folder)
    elif method == "raw":
        tiles = raw_read(folder, tile)
    else:
        tiles = seed(folder, tile, limit)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tiles": tiles, "seconds": seconds, "cpu": cpu, "rss_mib": rss}))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(
    methods: list[str], folder: Path, tile: int, limit: int, repeat: int
) -> dict[str, dict[str, float]]:
    """A warm-up run of each method, then ``repeat`` rounds of timed subprocess runs, the methods
    taking turns in each round (so a change in the VM's load hits them alike); medians, the
    loads seen and the whole process's wall time (start-up and imports included)."""
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    for attempt in range(repeat + 1):
        for method in methods:
            command = [sys.executable, __file__, "--child", method, "--folder", str(folder)]
            command += ["--tile", str(tile), "--seed-tiles", str(limit)]
            load = os.getloadavg()[0]
            began = time.perf_counter()
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            wall = time.perf_counter() - began
            if attempt:  # the first run only warms the OS cache
                run = json.loads(result.stdout.strip().splitlines()[-1])
                runs[method].append(run | {"load": load, "wall": wall})
    results = {}
    for method, done in runs.items():
        rates = [r["tiles"] / r["seconds"] for r in done]
        results[method] = {
            "tiles/s": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
            "rss": max(r["rss_mib"] for r in done),
            "load": statistics.median(r["load"] for r in done),
            "wall": statistics.median(r["wall"] for r in done),
            "cpu ms": statistics.median(1000 * r["cpu"] / r["tiles"] for r in done),
            "tiles": done[0]["tiles"],
        }
    return results


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model})"


NAMES = {
    "ours": "geotiler tile (zarr)",
    "raw": "raw read pass (1 thread)",
    "seed": "seed: window read + 2 GeoTIFF/tile",
    "pil": "PIL read: JPEG + PNG to numpy (1 thr)",
}
GOALS = {"raw": 0.7, "seed": 10.0, "pil": 2.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000, help="scene width (and height) in px")
    parser.add_argument("--height", type=int, default=None, help="scene height if not square")
    parser.add_argument("--tile", type=int, default=300, help="tile side in pixels")
    parser.add_argument("--seed-tiles", type=int, default=0, help="tiles for the seed way, 0: all")
    parser.add_argument("--chips", type=int, default=0, help="many-chips case: this many chips")
    parser.add_argument("--chip-size", type=int, default=256, help="chip side in px")
    parser.add_argument("--rgb-masks", action="store_true", help="chips: RGB colour-coded masks")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method")
    parser.add_argument(
        "--methods", default=None, help="comma-separated methods [ours,raw,seed; chips: ours,pil]"
    )
    parser.add_argument("--folder", type=Path, default=None, help="reuse generated files here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.tile, args.seed_tiles)
        return
    height = args.height or args.size
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench_tile_"))
    methods = (args.methods or ("ours,pil" if args.chips else "ours,raw,seed")).split(",")
    try:
        if args.chips and not (folder / "classes.json").exists():
            generate_chips(folder, args.chips, args.chip_size, args.rgb_masks)
        elif not args.chips and not (folder / "mask.tif").exists():
            folder.mkdir(parents=True, exist_ok=True)
            generate(folder, args.size, height)
        results = measure(methods, folder, args.tile, args.seed_tiles, args.repeat)
        print(f"machine: {machine()}; load average (1 min) noted per method")
        if args.chips:
            masks = "RGB colour" if args.rgb_masks else "class id"
            print(
                f"{args.chips} JPEG chips {args.chip_size} px x 3 uint8 with {masks} PNG masks, "
                f"{sum(f.stat().st_size for f in folder.glob('*/*')) / 2**20:.0f} MiB"
            )
        else:
            print(f"scene {args.size} x {height} x {BANDS} uint16, tiles {args.tile} px")
        print(
            f"{'method':38} {'tiles':>6} {'tiles/s':>8} {'(min-max)':>16} "
            f"{'CPU ms/tile':>11} {'peak RSS':>9} {'process':>8} {'load':>5}"
        )
        for method, r in results.items():
            spread = f"({r['min']:.1f}-{r['max']:.1f})"
            print(
                f"{NAMES[method]:38} {r['tiles']:6d} {r['tiles/s']:8.1f} {spread:>16} "
                f"{r['cpu ms']:11.2f} {r['rss']:6.0f} MiB {r['wall']:7.2f}s {r['load']:5.1f}"
            )
        if "ours" in results:
            for method, goal in GOALS.items():
                if method in results:
                    ratio = results["ours"]["tiles/s"] / results[method]["tiles/s"]
                    print(f"ours / {method:5} {ratio:6.2f}x  (goal >= {goal}x)")
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
