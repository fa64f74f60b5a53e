"""Tiles/s delivered by the training loader: the Zarr tile store vs one GeoTIFF per tile.

The reference is the seed project's layout (every tile a small GeoTIFF image plus a GeoTIFF
mask). Both go through the same Dataset code path (normalise + D4 augmentation) and a torch
DataLoader with 0, 1 and 2 workers; the table prints tiles/s, peak RSS and the ratio.

    python benchmarks/bench_loader.py work/demo/tiles.zarr --tiles 64 --batch-size 8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import rasterio
import torch
from affine import Affine
from torch.utils.data import DataLoader

from geotiler.tiles.store import TileStore
from geotiler.train.data import TileDataset


class GeoTiffTiles:
    """The TileStore ``read`` interface over ``tiles/<i>.tif`` and ``masks/<i>.tif``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        with rasterio.open(self.folder / "tiles" / f"{i}.tif") as src:
            image = src.read()
        with rasterio.open(self.folder / "masks" / f"{i}.tif") as src:
            mask = src.read(1)
        return image, mask


class GeoTiffDataset(TileDataset):
    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        if self._store is None:
            self._store = GeoTiffTiles(self.path)
        return super().__getitem__(item)


def export_geotiffs(store: TileStore, ids: np.ndarray, folder: Path) -> None:
    (folder / "tiles").mkdir(parents=True)
    (folder / "masks").mkdir()
    size = store.tile_size
    index = store.index
    for i in ids:
        image, mask = store.read(int(i))
        row, col = int(index["row"].iloc[i]), int(index["col"].iloc[i])
        common = {
            "driver": "GTiff", "height": size, "width": size, "compress": "deflate",
            "crs": store.grid.crs, "transform": store.grid.transform * Affine.translation(col, row),
        }  # fmt: skip
        with rasterio.open(
            folder / "tiles" / f"{i}.tif", "w", count=image.shape[0], dtype=image.dtype, **common
        ) as dst:
            dst.write(image)
        with rasterio.open(
            folder / "masks" / f"{i}.tif", "w", count=1, dtype="uint8", **common
        ) as dst:
            dst.write(mask, 1)


def tiles_per_s(dataset: Any, *, workers: int, batch_size: int, epochs: int) -> float:
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
        persistent_workers=workers > 0,
    )  # fmt: skip
    for _ in loader:  # warm-up epoch: worker start-up and first opens are not timed
        pass
    count = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            count += batch["image"].shape[0]
    return count / (time.perf_counter() - start)


def peak_rss_mb() -> float:
    me = psutil.Process()
    rss = sum(p.memory_info().rss for p in [me, *me.children(recursive=True)])
    return rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--tiles", type=int, default=64, help="tiles to read (kept ones first)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = TileStore.open(args.store)
    ids = store.indices()[: args.tiles]
    common = {"mean": store.band_mean, "std": store.band_std, "augment": True}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        export_geotiffs(store, ids, folder)
        zarr_set = TileDataset(args.store, ids, **common)
        tiff_set = GeoTiffDataset(folder, ids, **common)
        print(
            f"{len(ids)} tiles of {store.tile_size} px x {len(store.bands)} bands, "
            f"batch {args.batch_size}, {args.epochs} epochs, augmentation on, pid {os.getpid()}"
        )
        print(
            f"{'workers':>7} {'zarr tiles/s':>13} {'geotiff tiles/s':>16} {'ratio':>6} "
            f"{'RSS MB':>7}"
        )
        for workers in args.workers:
            options = {"workers": workers, "batch_size": args.batch_size, "epochs": args.epochs}
            ours = tiles_per_s(zarr_set, **options)
            ref = tiles_per_s(tiff_set, **options)
            print(
                f"{workers:>7} {ours:>13.1f} {ref:>16.1f} {ours / ref:>6.2f} {peak_rss_mb():>7.0f}"
            )


if __name__ == "__main__":
    main()
