"""The Python API (``geotiler.tile/train/predict/evaluate/open_store/rescale_mask``) on tiny data.

The chain runs through the top-level names only, as a notebook would; ``import geotiler`` must
load neither torch nor dask (the API is imported on first use).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

import geotiler
from geotiler.errors import CatalogError, InputError
from geotiler.progress import no_progress
from tests.conftest import write_geotiff

REPO = Path(__file__).parents[1]
TINY = "architecture: unet\narguments: {widths: [4, 8, 16]}\ntrain: {batch_size: 8, lr: 0.01}\n"


def make_pair(folder: Path, rows: int = 128, cols: int = 128) -> tuple[Path, Path]:
    """``scene.tif`` (3 named bands whose brightness follows the class) and ``mask.tif``."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(1, 4, size=(rows // 16 + 1, cols // 16 + 1))
    labels = np.kron(coarse, np.ones((16, 16), np.int64))[:rows, :cols].astype(np.uint8)
    labels[:, :8] = 0
    bands = [np.where(labels == k + 1, 200, 40) + rng.normal(0, 10, labels.shape) for k in range(3)]
    image = np.stack(bands).clip(1, 255).astype(np.uint16)
    scene = write_geotiff(folder / "scene.tif", image)
    with rasterio.open(scene, "r+") as dst:
        for i, name in enumerate(("B04", "B03", "B02"), start=1):
            dst.set_band_description(i, name)
    mask = write_geotiff(folder / "mask.tif", labels)
    return scene, mask


def test_import_geotiler_loads_neither_torch_nor_dask() -> None:
    code = (
        "import sys, geotiler; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'dask', 'zarr'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"
    assert {"tile", "train", "predict", "evaluate", "open_store", "rescale_mask"} <= set(
        dir(geotiler)
    )
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = geotiler.nope  # type: ignore[attr-defined]


def test_rescale_subpackage_and_rescale_mask_coexist(tmp_path: Path) -> None:
    import geotiler.rescale

    assert geotiler.rescale.__name__ == "geotiler.rescale"  # the subpackage, not shadowed
    mask = write_geotiff(tmp_path / "mask_1m.tif", np.kron(np.eye(4, dtype=np.uint8) + 1,
                                                          np.ones((10, 10), np.uint8)),
                         resolution=1.0)  # fmt: skip
    result = geotiler.rescale_mask(mask, tmp_path / "mask_10m.tif", factor=10)
    with rasterio.open(result.path) as ds:
        assert ds.shape == (4, 4)
        assert (ds.read(1) == np.eye(4, dtype=np.uint8) + 1).all()


def test_tile_train_predict_evaluate_through_the_api(tmp_path: Path) -> None:
    scene, mask = make_pair(tmp_path)
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY)

    store = geotiler.tile(scene, mask, output=tmp_path / "tiles.zarr", size=32, split="block")
    assert store.tile_size == 32 and store.bands == ("B04", "B03", "B02")
    reopened = geotiler.open_store(store.path)
    assert len(reopened) == len(store) > 0
    tree = reopened.to_xarray()
    assert tree["images"].dims == ("tile", "band", "y", "x")
    assert list(tree["band"].values) == ["B04", "B03", "B02"]
    assert tree["masks"].shape == (len(store), 32, 32)
    assert "verdict" in tree["index"].data_vars

    run = geotiler.train(store, tmp_path / "run", model=preset, epochs=1, seed=1)
    assert run.epochs_run == 1 and (run.run_dir / "best.pt").is_file()

    [result] = geotiler.predict(scene, tmp_path / "map.tif", model=run.run_dir / "best.pt")
    assert result.output == tmp_path / "map.tif" and sum(result.class_pixels.values()) > 0
    with rasterio.open(result.output) as ds, rasterio.open(scene) as src:
        assert ds.shape == src.shape and ds.crs == src.crs

    from geotiler.inference import load_predictor

    predictor = load_predictor(run.run_dir / "best.pt", use="network")  # the 32 px network
    bars: list[str] = []

    def progress(label: str, total: int, unit: str) -> Any:
        bars.append(label)
        return no_progress(label, total, unit)

    with pytest.raises(InputError, match=r"--overlap must be in \[0, 32\) px"):
        geotiler.predict(scene, tmp_path / "m.tif", model=predictor, overlap=64, progress=progress)
    assert bars == []  # refused before a progress bar drew "0/N tiles"
    [again] = geotiler.predict([scene], tmp_path / "map2.tif", model=predictor, overlap=8)
    assert again.output.is_file()

    report = geotiler.evaluate(result.output, mask, tmp_path / "report")
    written = json.loads((report.report_dir / "metrics.json").read_text())
    assert 0.0 <= report.metrics["miou"] <= 1.0
    assert written["miou"] == pytest.approx(report.metrics["miou"], abs=1e-5)


def test_settings_are_validated_like_the_cli(tmp_path: Path) -> None:
    scene, mask = make_pair(tmp_path, 64, 64)
    with pytest.raises(CatalogError, match="siz"):
        geotiler.tile(scene, mask, output=tmp_path / "t.zarr", siz=32)


def _python_block(readme: str) -> str:
    section = readme.split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "README's 'Use from Python' section has no python code block"
    return found.group(1)


def test_readme_python_chain_compiles_and_names_the_real_api() -> None:
    code = _python_block((REPO / "README.md").read_text(encoding="utf-8"))
    compile(code, "README.md", "exec")
    used = set(re.findall(r"geotiler\.(\w+)\(", code))
    assert used >= {"tile", "train", "predict", "evaluate"}
    assert all(callable(getattr(geotiler, name)) for name in used)


@pytest.mark.slow
def test_readme_python_chain_runs_on_generated_data(tmp_path: Path, monkeypatch) -> None:
    code = _python_block((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(code.strip().splitlines()) <= 12
    make_pair(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "landcover.tif").is_file()
    assert (tmp_path / "report" / "metrics.json").is_file()
