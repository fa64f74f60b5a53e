"""``geotiler train --corrections``: corrected tiles join the store and change the prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from geotiler.cli import app
from geotiler.tiles.store import TileStore
from geotiler.view.corrections import Correction, write_corrections

pytestmark = pytest.mark.slow  # seconds each: a browser, or training


def _square(col0: int, row0: int, size: int, class_id: int) -> Correction:
    """A polygon over pixels [row0, row0+size) x [col0, col0+size) of the tiny scene."""
    left, top = 240000 + 10 * col0, 4780000 - 10 * row0
    right, bottom = left + 10 * size, top - 10 * size
    return Correction.now([left, right, right, left], [top, top, bottom, bottom], class_id, "t")


def test_train_on_corrections_changes_the_map_inside_the_polygon(
    tiny_dataset: Any, tmp_path: Path
) -> None:
    with rasterio.open(tiny_dataset.map) as src:
        before = src.read(1)
    window = np.s_[62:106, 62:106]  # inside the patch the model never saw labelled
    # Correct it to the class the model predicts least there.
    shares = {c: float((before[window] == c).mean()) for c in (1, 2, 3)}
    target = min(shares, key=lambda c: shares[c])
    corrections = tmp_path / "corrections.gpkg"
    write_corrections(corrections, [_square(60, 60, 48, target)], "EPSG:32631")
    store_copy = tmp_path / "tiles.zarr"
    import shutil

    shutil.copytree(tiny_dataset.store, store_copy)
    out = tmp_path / "run-corrected"
    result = CliRunner().invoke(
        app,
        ["train", str(store_copy), "--corrections", str(corrections), "--resume",
         str(tiny_dataset.run), "-o", str(out), "--epochs", "8", "--max-train-tiles", "64",
         "--correction-weight", "8"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "corrected pixels: accuracy" in result.output
    assert "validation split: mIoU" in result.output
    store = TileStore.open(store_copy)
    corrected = np.flatnonzero(store.sources == 1)
    assert len(corrected) >= 1
    assert set(store.index.loc[corrected, "split"]) == {"train"}
    weights = store.sampling_weights(corrected)
    assert weights.min() > store.sampling_weights(store.indices("train")[:1]).max()
    assert (out / "landcover.tif").is_file()  # the map predicted again
    # The corrected class contradicts the patch's spectra (the tiny scene's bands give the
    # class away), so how far argmax moves in a few epochs is luck; the network's belief in
    # the corrected class inside the patch must rise, whichever member the map uses.
    for use in ("network", "baseline"):  # the baseline weighs corrected pixels likewise
        p_before = _probability(tiny_dataset.run, use, tiny_dataset.scene, target, window)
        p_after = _probability(out, use, tiny_dataset.scene, target, window)
        assert p_after > p_before + 0.05, (use, p_before, p_after)
    assert (tiny_dataset.run / "last.pt").is_file()  # the original run is untouched


def _probability(run: Path, use: str, scene: Path, class_id: int, window: Any) -> float:
    from geotiler.inference import load_predictor

    predictor = load_predictor(run / "last.pt", device="cpu", use=use)
    with rasterio.open(scene) as src:
        pixels = src.read()[None].astype(np.float32)  # the whole 192 px scene, one batch
    probabilities = predictor(pixels)[0, class_id]
    return float(probabilities[window].mean())


def test_corrections_need_resume(tiny_dataset: Any, tmp_path: Path) -> None:
    corrections = tmp_path / "c.gpkg"
    write_corrections(corrections, [_square(0, 0, 10, 1)], "EPSG:32631")
    result = CliRunner().invoke(app, ["train", "--corrections", str(corrections)])
    assert result.exit_code == 2
    assert "--resume" in result.output
