"""Predict, export and the ONNX path through real checkpoints and the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.cli import app
from geotiler.grid import Grid
from geotiler.train.checkpoint import save_checkpoint
from geotiler.train.models import get_model

CLASSES = ClassTable(
    name="toy",
    nodata=0,
    classes=(
        ClassInfo(id=1, name="field", color="#ffff00"),
        ClassInfo(id=2, name="forest", color="#00aa00"),
        ClassInfo(id=3, name="water", color="#0000ff", tags=("water",)),
    ),
)
BANDS = ["B02", "B03", "B04"]


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    arguments = {"widths": [8, 16]}
    model = get_model("unet", in_channels=3, num_classes=4, **arguments)
    payload = {
        "state_dict": model.state_dict(),
        "model": {"preset": "test", "architecture": "unet", "arguments": arguments},
        "bands": BANDS,
        "band_mean": [300.0, 300.0, 300.0],
        "band_std": [100.0, 100.0, 100.0],
        "classes": CLASSES.model_dump(mode="json"),
        "num_classes": 4,
        "nodata": 0,
        "tile_size": 32,
    }
    return save_checkpoint(tmp_path / "run" / "best.pt", payload)


@pytest.fixture
def scene(write_raster) -> Path:
    rng = np.random.default_rng(1)
    data = rng.normal(300, 100, (3, 70, 90)).clip(1, None).astype(np.uint16)
    data[:, :10, :] = 0
    path = write_raster("scene.tif", data, nodata=0)
    with rasterio.open(path, "r+") as dataset:
        dataset.descriptions = tuple(BANDS)
    return path


def test_predict_cli_writes_a_georeferenced_map(runner, checkpoint, scene, tmp_path) -> None:
    out = tmp_path / "map.tif"
    result = runner.invoke(app, ["predict", str(scene), "-o", str(out), "--model", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert "hectares" in result.output
    with rasterio.open(out) as dataset:
        assert Grid.from_dataset(dataset).almost_equals(Grid.from_raster(scene))
        labels = dataset.read(1)
        assert dataset.colormap(1)[3][:3] == (0, 0, 255)
    assert (labels[:10] == 0).all()
    assert set(np.unique(labels[10:])) <= {1, 2, 3}


def test_predict_class_restriction_by_name(runner, checkpoint, scene, tmp_path) -> None:
    out = tmp_path / "two.tif"
    args = [
        "predict",
        str(scene),
        "-o",
        str(out),
        "--model",
        str(checkpoint),
        "--classes",
        "forest,3",
    ]
    assert runner.invoke(app, [*args, "-q"]).exit_code == 0
    with rasterio.open(out) as dataset:
        assert set(np.unique(dataset.read(1))) <= {0, 2, 3}
    bad = runner.invoke(app, [*args[:-1], "lava", "--overwrite"])
    assert bad.exit_code == 1
    assert "no class 'lava'" in bad.output


def test_predict_bad_inputs(runner, checkpoint, scene, tmp_path, write_raster) -> None:
    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["predict", *args])
        return result.exit_code, result.output

    four = write_raster("four.tif", np.ones((4, 40, 40), np.uint16))
    code, output = run(str(four), "-o", str(tmp_path / "a.tif"), "--model", str(checkpoint))
    assert code == 1 and "4 bands but the model expects 3" in output

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(checkpoint.read_bytes()[:500])
    code, output = run(str(scene), "-o", str(tmp_path / "b.tif"), "--model", str(corrupt))
    assert code == 1 and "corrupt.pt" in output

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    code, output = run(str(scene), "-o", str(tmp_path / "c.tif"), "--model", str(foreign))
    assert code == 1 and "not a geotiler checkpoint" in output

    empty = write_raster("empty.tif", np.zeros((3, 40, 40), np.uint16), nodata=0)
    code, output = run(str(empty), "-o", str(tmp_path / "d.tif"), "--model", str(checkpoint))
    assert code == 1 and "nodata" in output
    assert not (tmp_path / "d.tif").exists()

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not shutil.os.access(locked, shutil.os.W_OK):  # root ignores permissions
            code, output = run(str(scene), "-o", str(locked / "e.tif"), "--model", str(checkpoint))
            assert code == 1 and "cannot write" in output
    finally:
        locked.chmod(0o700)

    no_crs = tmp_path / "nocrs.tif"
    with rasterio.open(
        no_crs, "w", driver="GTiff", width=40, height=40, count=3, dtype="uint16"
    ) as dataset:
        dataset.write(np.ones((3, 40, 40), np.uint16))
    # A scene without georeference is predicted on its pixel grid; the map invents no CRS.
    code, output = run(str(no_crs), "-o", str(tmp_path / "f.tif"), "--model", str(checkpoint))
    assert code == 0, output
    with rasterio.open(tmp_path / "f.tif") as written:
        assert written.crs is None and written.shape == (40, 40)


def test_export_pt_drops_training_state_and_still_predicts(runner, checkpoint, scene, tmp_path):
    content = torch.load(checkpoint, weights_only=True)
    content["resume"] = {"optimizer": {"state": torch.zeros(1000, 100)}}
    torch.save(content, checkpoint)
    slim = tmp_path / "slim.pt"
    result = runner.invoke(app, ["export", str(checkpoint), "-o", str(slim)])
    assert result.exit_code == 0, result.output
    assert "resume" not in torch.load(slim, weights_only=True)
    assert slim.stat().st_size < checkpoint.stat().st_size / 2
    out = tmp_path / "slim.tif"
    run = runner.invoke(app, ["predict", str(scene), "-o", str(out), "--model", str(slim), "-q"])
    assert run.exit_code == 0, run.output


def test_shipped_reference_model_loads() -> None:
    from geotiler.inference import load_predictor

    reference = Path(__file__).parents[1] / "models" / "reference" / "demo-unet-tiny.pt"
    predictor = load_predictor(reference, device="cpu")
    assert predictor.bands == ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    assert predictor.classes.name == "catalonia12"
