"""Benchmark ``geotiler tile`` against a raw read pass and the seed project's per-tile GeoTIFFs.

Generates a ``--size`` x ``--size`` (``--height`` rows if given) x 10-band uint16 scene (tiled
512 px, deflate) and a uint8 mask, then measures each method in its own subprocess on the same
files: once to warm the OS cache, then ``--repeat`` timed runs (median reported, with the load
average at each run and the subprocess's peak RSS):

- ours: ``make_tiles`` (Zarr store, per-tile stats, splits), default settings;
- raw read: one pass over the scene and the mask in block-aligned full-width row bands, one thread
  (GDAL's default);
- seed: what the seed project did, a rasterio window read of image and mask per tile and one
  uncompressed GeoTIFF (GDAL's default) written per tile for each, on the first ``--seed-tiles``
  tiles (all by default), reported as a rate.

Example: ``python benchmarks/bench_tile.py --size 10000 --repeat 3``
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


def child(method: str, folder: Path, tile: int, limit: int) -> None:
    """Run one method in this process and print tiles, seconds and peak RSS as JSON."""
    for previous in (folder / "tiles.zarr", folder / "seed"):  # the last run's output, untimed
        shutil.rmtree(previous, ignore_errors=True)
    os.sync()  # and its writes flushed, so they do not land in this run's time
    start = time.perf_counter()
    if method == "ours":
        tiles = ours(folder, tile)
    elif method == "raw":
        tiles = raw_read(folder, tile)
    else:
        tiles = seed(folder, tile, limit)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tiles": tiles, "seconds": seconds, "rss_mib": rss}))


def measure(method: str, folder: Path, tile: int, limit: int, repeat: int) -> dict[str, float]:
    """Warm-up run, then ``repeat`` timed subprocess runs; medians and the loads seen."""
    runs, loads = [], []
    command = [sys.executable, __file__, "--child", method, "--folder", str(folder)]
    command += ["--tile", str(tile), "--seed-tiles", str(limit)]
    for attempt in range(repeat + 1):
        load = os.getloadavg()[0]
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        if attempt:  # the first run only warms the OS cache
            runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
            loads.append(load)
    rates = [r["tiles"] / r["seconds"] for r in runs]
    return {
        "tiles/s": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "rss": max(r["rss_mib"] for r in runs),
        "load": statistics.median(loads),
        "tiles": runs[0]["tiles"],
    }


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000, help="scene width (and height) in px")
    parser.add_argument("--height", type=int, default=None, help="scene height if not square")
    parser.add_argument("--tile", type=int, default=300, help="tile side in pixels")
    parser.add_argument("--seed-tiles", type=int, default=0, help="tiles for the seed way, 0: all")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method")
    parser.add_argument("--methods", default="ours,raw,seed", help="comma-separated methods")
    parser.add_argument("--folder", type=Path, default=None, help="reuse generated files here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.tile, args.seed_tiles)
        return
    height = args.height or args.size
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench_tile_"))
    try:
        if not (folder / "mask.tif").exists():
            folder.mkdir(parents=True, exist_ok=True)
            generate(folder, args.size, height)
        names = {"ours": "geotiler tile (zarr)", "raw": "raw read pass (1 thread)"}
        names["seed"] = "seed: window read + 2 GeoTIFF/tile"
        results = {
            m: measure(m, folder, args.tile, args.seed_tiles, args.repeat)
            for m in args.methods.split(",")
        }
        print(f"machine: {machine()}; load average (1 min) noted per method")
        print(f"scene {args.size} x {height} x {BANDS} uint16, tiles {args.tile} px")
        print(
            f"{'method':36} {'tiles':>6} {'tiles/s':>8} {'(min-max)':>14} "
            f"{'peak RSS':>9} {'load':>5}"
        )
        for method, r in results.items():
            spread = f"({r['min']:.1f}-{r['max']:.1f})"
            print(
                f"{names[method]:36} {r['tiles']:6d} {r['tiles/s']:8.1f} {spread:>14} "
                f"{r['rss']:6.0f} MiB {r['load']:5.1f}"
            )
        if "ours" in results:
            for method, goal in (("raw", 0.7), ("seed", 10.0)):
                if method in results:
                    ratio = results["ours"]["tiles/s"] / results[method]["tiles/s"]
                    print(f"ours / {method:5} {ratio:6.2f}x  (goal >= {goal}x)")
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
