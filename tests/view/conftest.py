"""Fixtures for the view tests: a tiny dataset (scene, mask, store, trained run, map)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from typer.testing import CliRunner

from geotiler.catalog import ClassTable

TINY = "architecture: unet\narguments: {widths: [8, 16, 32]}\ntrain: {batch_size: 8, lr: 0.01}\n"


@dataclass(frozen=True)
class TinyDataset:
    folder: Path
    scene: Path
    mask: Path
    store: Path
    run: Path
    map: Path
    probabilities: Path


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


TRANSFORM = Affine(10, 0, 240000, 0, -10, 4780000)


def write_tif(
    path: Path, data: np.ndarray, nodata: int | None = None, crs: str | None = "EPSG:32631"
) -> Path:
    bands, rows, cols = data.shape
    profile = {
        "driver": "GTiff", "height": rows, "width": cols, "count": bands, "dtype": data.dtype.name,
        "crs": crs, "transform": TRANSFORM if crs else Affine.identity(),
        "nodata": nodata, "tiled": True, "blockxsize": 64, "blockysize": 64,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def make_scene(folder: Path, *, scene_px: int = 192, seed: int = 0) -> tuple[Path, Path]:
    """A 3-band scene whose band k is bright where the mask is class k+1, and that mask."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 4, size=(scene_px // 24 + 1, scene_px // 24 + 1))
    mask = np.kron(coarse, np.ones((24, 24), np.int64))[:scene_px, :scene_px].astype(np.uint8)
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
    return write_tif(folder / "scene.tif", image), write_tif(
        folder / "mask.tif", mask[None], nodata=0
    )


def make_tiny_dataset(folder: Path) -> TinyDataset:
    """A 192 px 3-band scene with its mask, a 48 px tile store, a 2-epoch run and its map."""
    from geotiler.cli import app
    from geotiler.tiles.run import TileInputs, TileSettings, make_tiles

    scene, mask = make_scene(folder)
    inputs = TileInputs.seasons({"april": scene}, mask, CLASSES, bands=("B02", "B03", "B04"))
    store = folder / "tiles.zarr"
    make_tiles(inputs, store, TileSettings(size=48, split="block:0.7,0.3,0", block_tiles=1))
    preset = folder / "tiny.yaml"
    preset.write_text(TINY)
    run = folder / "run"
    runner = CliRunner()
    trained = runner.invoke(
        app,
        [
            "train",
            str(store),
            "-m",
            str(preset),
            "--epochs",
            "8",
            "--max-train-tiles",
            "48",
            "-o",
            str(run),
            "-q",
        ],
    )
    assert trained.exit_code == 0, trained.output
    landcover, probabilities = folder / "landcover.tif", folder / "probabilities.tif"
    predicted = runner.invoke(
        app,
        ["predict", str(folder / "scene.tif"), "-o", str(landcover), "--model",
         str(run / "last.pt"), "--probabilities", str(probabilities), "-q"],
    )  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    return TinyDataset(folder, scene, mask, store, run, landcover, probabilities)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> TinyDataset:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@dataclass
class ServedView:
    url: str
    state: Any
    sources: Any


@contextlib.contextmanager
def serve(sources: Any, **options: Any) -> Iterator[ServedView]:
    """Run ``geotiler view`` for ``sources`` on a free port in a background thread."""
    import asyncio

    from geotiler.view.server import start_view

    ready: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            server, running = start_view(sources, port=0, **options)
        except Exception as exc:  # hand the failure to the test thread
            ready.put(exc)
            return
        server.start()
        ready.put((server, running))
        server.io_loop.start()
        server.stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started = ready.get(timeout=60)
    if isinstance(started, Exception):
        raise started
    server, running = started
    try:
        yield ServedView(running.url, running.state, sources)
    finally:
        server.io_loop.add_callback(server.io_loop.stop)
        thread.join(timeout=10)


def view_sources(dataset: TinyDataset, corrections: Path | None = None) -> Any:
    from geotiler.catalog import Catalog
    from geotiler.view.sources import resolve_sources

    return resolve_sources(
        Catalog.load(),
        None,
        scenes=[dataset.scene],
        map_path=dataset.map,
        store=dataset.store,
        probabilities=dataset.probabilities,
        truth=dataset.mask,
        corrections=corrections,
    )
