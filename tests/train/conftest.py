"""Fixtures for the training tests: a tiny tile store with the TileStore reader interface.

``fake_store`` writes tiles to an ``.npz`` in tmp_path and makes ``geotiler.train.data`` open it
with :class:`FakeStore` (same attributes and methods as ``geotiler.tiles.store.TileStore``), so the
data path is tested without the tiling stage. Tests of the whole chain use a real store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geotiler.catalog import ClassTable

CLASSES = ClassTable.model_validate(
    {
        "name": "tiny",
        "nodata": 0,
        "classes": [
            {"id": 1, "name": "water", "color": "#1f78d1"},
            {"id": 2, "name": "forest", "color": "#1e6b2a"},
            {"id": 3, "name": "urban", "color": "#d7263d"},
        ],
    }
)
SPLIT_CODES = ("train", "val", "test")


class FakeStore:
    """The TileStore reader interface over arrays saved by :func:`make_fake_store`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        meta = json.loads((self.path / "meta.json").read_text())
        arrays = np.load(self.path / "tiles.npz")
        self._images, self._masks = arrays["images"], arrays["masks"]
        self._split, self._keep = arrays["split"], arrays["keep"]
        self._weight = arrays["weight"]
        self.tile_size = int(meta["tile_size"])
        self.stride = self.tile_size
        self.shard_tiles = 8
        self.bands = tuple(meta["bands"])
        self.image_dtype = self._images.dtype
        self.classes = ClassTable.model_validate(meta["classes"])
        self.nodata = self.classes.nodata
        self.num_classes = max(self.classes.ids) + 1
        self.band_mean = np.asarray(meta["band_mean"])
        self.band_std = np.asarray(meta["band_std"])
        self.class_weights = np.asarray(meta["class_weights"])
        self.scenes = ("april",)
        self.attrs = meta

    @classmethod
    def open(cls, path: Path) -> FakeStore:
        return cls(path)

    def __len__(self) -> int:
        return len(self._masks)

    def indices(self, split: str | None = None) -> np.ndarray:
        keep = self._keep.copy()
        if split is not None:
            keep &= self._split == SPLIT_CODES.index(split)
        return np.flatnonzero(keep).astype(np.int64)

    def sampling_weights(self, indices: np.ndarray) -> np.ndarray:
        return self._weight[np.asarray(indices)].astype(np.float64)

    @property
    def sources(self) -> np.ndarray:  # as TileStore's: every tile cut by `tile`
        return np.zeros(len(self), np.uint8)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._images[i].copy(), self._masks[i].copy()

    def read_many(
        self,
        ids: np.ndarray,
        *,
        backend: str = "auto",
        threads: int | None = None,
        out: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        if out is None:
            return self._images[ids].copy(), self._masks[ids].copy()
        out[0][...], out[1][...] = self._images[ids], self._masks[ids]
        return out

    def column(self, name: str) -> np.ndarray:
        """The index columns the recipe reads, computed from the tiles."""
        if name == "class_counts":
            return np.stack(
                [np.bincount(m.ravel(), minlength=self.num_classes) for m in self._masks]
            )
        if name == "valid_px":
            return np.full(len(self), self.tile_size**2, dtype=np.int64)
        if name == "cloudy_px":
            return np.full(len(self), -1, dtype=np.int64)
        raise KeyError(name)


def make_fake_store(
    path: Path, *, tiles: int = 24, size: int = 36, seed: int = 0, val_share: float = 0.25
) -> Path:
    """Tiles whose class is readable from the bands (so a small net learns it fast)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((tiles, size, size), dtype=np.uint8)
    images = np.zeros((tiles, 3, size, size), dtype=np.uint16)
    yy, xx = np.mgrid[0:size, 0:size]
    for t in range(tiles):
        angle = rng.uniform(0, np.pi)
        edge = (xx - size / 2) * np.cos(angle) + (yy - size / 2) * np.sin(angle)
        masks[t] = np.where(edge < -4, 1, np.where(edge < 6, 2, 3))
        masks[t, : rng.integers(0, 5)] = 0  # nodata rows
        for band in range(3):
            level = np.where(masks[t] == band + 1, 3000, 800)
            images[t, band] = level + rng.normal(0, 150, (size, size)).clip(-700, 700)
    split = np.zeros(tiles, dtype=np.int64)
    split[: int(tiles * val_share)] = 1
    keep = np.ones(tiles, dtype=bool)
    keep[-1] = False  # one dropped tile, never served
    weight = rng.uniform(0.5, 2.0, tiles)
    stats = images[keep & (split == 0)].astype(np.float64)
    meta = {
        "tile_size": size,
        "bands": ["B02", "B03", "B04"],
        "classes": CLASSES.model_dump(mode="json"),
        "band_mean": stats.mean(axis=(0, 2, 3)).tolist(),
        "band_std": stats.std(axis=(0, 2, 3)).tolist(),
        "class_weights": [0.0, 1.0, 1.5, 2.0],
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "meta.json").write_text(json.dumps(meta))
    np.savez(path / "tiles.npz", images=images, masks=masks, split=split, keep=keep, weight=weight)
    return path


@pytest.fixture
def fake_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Path of a tiny store; geotiler.train.data opens it with :class:`FakeStore`."""
    monkeypatch.setattr("geotiler.train.data.open_store", FakeStore.open)
    return make_fake_store(tmp_path / "tiles.fake")


def make_real_store(
    folder: Path,
    *,
    size_px: int = 36,
    scene_px: int = 180,
    seed: int = 0,
    shard_tiles: int | None = None,
) -> Path:
    """A real Zarr store made by the tile stage from a small 3-band scene and its mask."""
    from geotiler.tiles.run import TileInputs, TileSettings, make_tiles

    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 4, size=(scene_px // 12 + 1, scene_px // 12 + 1))
    mask = np.kron(coarse, np.ones((12, 12), dtype=np.int64))[:scene_px, :scene_px].astype(np.uint8)
    mask[:, :6] = 0  # a nodata strip
    image = (
        np.stack(
            [
                np.where(mask == band + 1, 3000, 800) + rng.normal(0, 150, mask.shape)
                for band in range(3)
            ]
        )
        .clip(0, 6000)
        .astype(np.uint16)
    )
    scene = _write_tif(folder / "scene.tif", image)
    mask_path = _write_tif(folder / "mask.tif", mask[np.newaxis], nodata=0)
    inputs = TileInputs.seasons({"april": scene}, mask_path, CLASSES, bands=("B02", "B03", "B04"))
    settings = TileSettings(
        size=size_px, split="block:0.6,0.4,0", block_tiles=1, seed=seed, shard_tiles=shard_tiles
    )
    make_tiles(inputs, folder / "tiles.zarr", settings)
    return folder / "tiles.zarr"


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real tile store (25 tiles of 36 px, 3 bands, classes 1..3, nodata 0)."""
    return make_real_store(tmp_path_factory.mktemp("store"))


def _write_tif(path: Path, data: np.ndarray, nodata: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    bands, rows, cols = data.shape
    profile = {
        "driver": "GTiff", "height": rows, "width": cols, "count": bands, "dtype": data.dtype.name,
        "crs": "EPSG:32631", "transform": Affine(10, 0, 240000, 0, -10, 4780000), "nodata": nodata,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture
def fake_store_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``fake_store_factory(name, **options)``: like ``fake_store`` with make_fake_store options."""
    monkeypatch.setattr("geotiler.train.data.open_store", FakeStore.open)
    return lambda name, **options: make_fake_store(tmp_path / name, **options)
