"""Fixtures shared by every test module: tiny GeoTIFFs with a real CRS, written in tmp_path."""

from __future__ import annotations

import os

# As `geotiler` itself does (geotiler/cli/__init__.py), before any test module loads torch or
# LightGBM (and their OpenMP): threads spinning while they wait made training steps 10-40x slower
# on a busy machine, and timed runs (a 20 s budget) overran.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from typer.testing import CliRunner

from geotiler.grid import Grid

UTM31 = "EPSG:32631"
ORIGIN = (240000.0, 4780000.0)

WriteRaster = Callable[..., Path]


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    grid: Grid | None = None,
    resolution: float = 10.0,
    crs: str = UTM31,
    origin: tuple[float, float] = ORIGIN,
    nodata: float | None = None,
    layout: str = "tiled",
    block_px: int = 256,
    **extra: Any,
) -> Path:
    """Write ``data`` ((rows, cols) or (bands, rows, cols)) as a GeoTIFF on ``grid`` (or built one).

    ``layout="strip"`` writes one-row strips like the real Catalonia mask.
    """
    array = data if data.ndim == 3 else data[np.newaxis]
    bands, rows, cols = array.shape
    if grid is None:
        transform = Affine(resolution, 0, origin[0], 0, -resolution, origin[1])
        grid = Grid(rasterio.crs.CRS.from_user_input(crs), transform, (rows, cols))
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": rows,
        "width": cols,
        "count": bands,
        "dtype": array.dtype.name,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
    }
    if layout == "strip":
        profile.update(tiled=False, blockysize=1)
    else:
        profile.update(tiled=True, blockxsize=block_px, blockysize=block_px, compress="deflate")
    profile.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


@pytest.fixture
def write_raster(tmp_path: Path) -> WriteRaster:
    """``write_raster(name, data, **options)``: a GeoTIFF in tmp_path (see write_geotiff)."""

    def _write(name: str, data: np.ndarray, **options: Any) -> Path:
        return write_geotiff(tmp_path / name, data, **options)

    return _write


@pytest.fixture
def blobby_mask() -> Callable[..., np.ndarray]:
    """``blobby_mask(rows, cols, classes=12, seed=0)``: smooth uint8 classes, nodata on the left."""

    def _make(
        rows: int,
        cols: int,
        *,
        classes: int = 12,
        seed: int = 0,
        blob_px: int = 40,
        nodata_fraction: float = 0.1,
    ) -> np.ndarray:
        rng = np.random.default_rng(seed)
        coarse = rng.integers(1, classes + 1, size=(rows // blob_px + 2, cols // blob_px + 2))
        fine = np.kron(coarse, np.ones((blob_px, blob_px), dtype=np.int64))
        dy, dx = rng.integers(0, blob_px, size=2)
        mask = fine[dy : dy + rows, dx : dx + cols].astype(np.uint8)
        noise = rng.random((rows, cols)) < 0.05
        mask[noise] = rng.integers(1, classes + 1, size=int(noise.sum()))
        if nodata_fraction > 0:
            mask[:, : int(cols * nodata_fraction)] = 0
        return mask

    return _make


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def toy_unet_checkpoint(
    path: Path,
    classes: Any,
    *,
    mean: tuple[float, float] = (300.0, 300.0),
    std: tuple[float, float] = (100.0, 100.0),
    num_classes: int = 3,
) -> Path:
    """A seeded two-band (B04, B08) U-Net checkpoint over ``classes`` (a ClassTable), 32 px."""
    import torch

    from geotiler.train.checkpoint import save_checkpoint
    from geotiler.train.models import get_model

    torch.manual_seed(0)
    net = get_model("unet", in_channels=2, num_classes=num_classes, widths=[8, 16])
    payload = {
        "state_dict": net.state_dict(),
        "model": {"preset": "t", "architecture": "unet", "arguments": {"widths": [8, 16]}},
        "bands": ["B04", "B08"], "band_mean": list(mean), "band_std": list(std),
        "classes": classes.model_dump(mode="json"), "num_classes": num_classes, "nodata": 0,
        "tile_size": 32,
    }  # fmt: skip
    return save_checkpoint(path, payload)


def named_two_band_scene(write_raster: WriteRaster, rows: int, cols: int) -> Path:
    """``scene.tif``: two uint16 bands named B04 and B08 around 300, nodata 0."""
    data = np.random.default_rng(2).normal(300, 100, (2, rows, cols)).clip(1, None)
    path = write_raster("scene.tif", data.astype(np.uint16), nodata=0)
    with rasterio.open(path, "r+") as dataset:
        dataset.descriptions = ("B04", "B08")
    return path
