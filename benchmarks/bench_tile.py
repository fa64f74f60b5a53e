"""Benchmark ``geotiler tile`` against a raw read pass and the seed project's per-tile GeoTIFFs.

Generates a ``--size`` x ``--size`` x 10-band uint16 scene (tiled, deflate) and a uint8 mask, then
times, in one run: our tiler (Zarr store, stats, filters, splits); a raw read pass over the same
scene in block-aligned row bands; and the seed project's approach (a rasterio window read per tile
and one GeoTIFF written per tile for the image and one for the mask; timed on ``--seed-tiles``
tiles and reported as a rate). Prints tiles/s, Mpx/s, peak RSS and ratios.

Example: ``python benchmarks/bench_tile.py --size 10000 --tile 300``
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.io import geotiff_profile
from geotiler.tile import TileInputs, TileSettings, make_tiles
from geotiler.tiling import tile_offsets

BANDS = 10


def generate(folder: Path, size: int, seed: int = 0) -> tuple[Path, Path]:
    """A smooth-ish 10-band uint16 scene and a 12-class mask, written in row bands."""
    rng = np.random.default_rng(seed)
    transform = Affine(10, 0, 240000, 0, -10, 4780000)
    common = {"height": size, "width": size, "crs": "EPSG:32631", "transform": transform}
    scene = folder / "scene.tif"
    mask = folder / "mask.tif"
    band_rows = 512
    with (
        rasterio.open(scene, "w", **geotiff_profile(dtype="uint16", count=BANDS), **common) as s,
        rasterio.open(mask, "w", **geotiff_profile(dtype="uint8", nodata=0), **common) as m,
    ):
        x = np.arange(size, dtype=np.float32)
        for row in range(0, size, band_rows):
            rows = min(band_rows, size - row)
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


def raw_read(scene: Path) -> float:
    """Seconds to read the whole scene once in block-aligned full-width row bands."""
    start = time.perf_counter()
    with rasterio.open(scene) as src:
        block_rows = src.block_shapes[0][0]
        step = block_rows * max(1, 1024 // block_rows)
        for row in range(0, src.height, step):
            src.read(window=rasterio.windows.Window(0, row, src.width, min(step, src.height - row)))
    return time.perf_counter() - start


def seed_approach(scene: Path, mask: Path, out: Path, tile: int, limit: int) -> tuple[int, float]:
    """Per-tile window reads and one GeoTIFF per tile for image and mask; (tiles, seconds)."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    done = 0
    with rasterio.open(scene) as src, rasterio.open(mask) as msk:
        positions = [
            (r, c)
            for r in tile_offsets(src.height, tile, tile)
            for c in tile_offsets(src.width, tile, tile)
        ]
        for row, col in positions[:limit]:
            window = rasterio.windows.Window(int(col), int(row), tile, tile)
            image, labels = src.read(window=window), msk.read(1, window=window)
            transform = src.window_transform(window)
            profile = {
                "driver": "GTiff",
                "height": tile,
                "width": tile,
                "crs": src.crs,
                "transform": transform,
            }
            with rasterio.open(
                out / f"img_{row}_{col}.tif", "w", count=BANDS, dtype="uint16", **profile
            ) as dst:
                dst.write(image)
            with rasterio.open(
                out / f"mask_{row}_{col}.tif", "w", count=1, dtype="uint8", **profile
            ) as dst:
                dst.write(labels, 1)
            done += 1
    return done, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000, help="scene side in pixels")
    parser.add_argument("--tile", type=int, default=300, help="tile side in pixels")
    parser.add_argument("--seed-tiles", type=int, default=300, help="tiles timed for the seed way")
    parser.add_argument("--workers", type=int, default=None, help="Dask threads for our tiler")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_tile_"))
    try:
        scene, mask = generate(folder, args.size)
        table = ClassTable(
            name="bench",
            nodata=0,
            classes=tuple(ClassInfo(id=i, name=f"c{i}", color="#808080") for i in range(1, 13)),
        )
        inputs = TileInputs({"scene": scene}, mask, table)
        settings = TileSettings(size=args.tile, workers=args.workers)
        start = time.perf_counter()
        store = make_tiles(inputs, folder / "tiles.zarr", settings)
        ours = time.perf_counter() - start
        ours_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tiles = len(store)
        raw = raw_read(scene)
        seed_tiles, seed_s = seed_approach(scene, mask, folder / "seed", args.tile, args.seed_tiles)
        files = sum(1 for p in (folder / "tiles.zarr").rglob("*") if p.is_file())
        mpx = args.size**2 / 1e6
        rows = [
            ("geotiler tile (zarr)", tiles / ours, mpx / ours),
            ("raw read pass", tiles / raw, mpx / raw),
            (
                "seed: window read + 2 GeoTIFF/tile",
                seed_tiles / seed_s,
                seed_tiles * args.tile**2 / 1e6 / seed_s,
            ),
        ]
        print(
            f"scene {args.size} x {args.size} x {BANDS} uint16, tiles {args.tile} px: {tiles} tiles"
        )
        print(f"{'method':38} {'tiles/s':>10} {'Mpx/s':>10}")
        for name, rate, mpx_s in rows:
            print(f"{name:38} {rate:10.1f} {mpx_s:10.1f}")
        print(f"ours / raw read      {rows[0][1] / rows[1][1]:6.2f}x  (goal >= 0.7x)")
        print(f"ours / seed approach {rows[0][1] / rows[2][1]:6.2f}x  (goal >= 10x)")
        print(f"peak RSS after our tiler: {ours_rss:.0f} MiB; store files: {files}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
