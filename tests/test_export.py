"""`geotiler export`: TorchScript and ONNX files that predict the checkpoint's map."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from typer.testing import CliRunner

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.cli import app
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
SMALL = {
    "unet": {"widths": [8, 16]},
    "segformer-b0": {},
    "tiny-segformer": {
        "hidden_sizes": [8, 16, 24, 32], "depths": [1, 1, 1, 1],
        "num_attention_heads": [1, 2, 3, 4], "decoder_hidden_size": 16,
    },
}  # fmt: skip

MakeCheckpoint = Callable[[str], Path]


@pytest.fixture
def make_checkpoint(tmp_path: Path) -> MakeCheckpoint:
    def _make(name: str) -> Path:
        torch.manual_seed(0)
        architecture = "segformer-b0" if name == "tiny-segformer" else name
        arguments: dict[str, Any] = SMALL[name]
        model = get_model(architecture, in_channels=3, num_classes=4, **arguments)
        payload = {
            "state_dict": model.state_dict(),
            "model": {"preset": name, "architecture": architecture, "arguments": arguments},
            "bands": BANDS, "band_mean": [300.0] * 3, "band_std": [100.0] * 3,
            "classes": CLASSES.model_dump(mode="json"), "num_classes": 4, "nodata": 0,
            "tile_size": 32,
        }  # fmt: skip
        return save_checkpoint(tmp_path / name / "best.pt", payload)

    return _make


@pytest.fixture
def scene(write_raster: Callable[..., Path]) -> Path:
    rng = np.random.default_rng(1)
    data = rng.normal(300, 100, (3, 70, 90)).clip(1, None).astype(np.uint16)
    data[:, :10, :] = 0
    path = write_raster("scene.tif", data, nodata=0)
    with rasterio.open(path, "r+") as dataset:
        dataset.descriptions = tuple(BANDS)
    return path


def _predict(runner: CliRunner, scene: Path, model: Path, out: Path) -> np.ndarray:
    result = runner.invoke(
        app, ["predict", str(scene), "-o", str(out), "--model", str(model), "-q"]
    )
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as dataset:
        return dataset.read(1)


def _export(runner: CliRunner, checkpoint: Path, output: Path) -> str:
    result = runner.invoke(app, ["export", str(checkpoint), "-o", str(output)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", ["unet", "segformer-b0"])
def test_torchscript_export_predicts_the_checkpoint_map(
    runner: CliRunner, make_checkpoint: MakeCheckpoint, scene: Path, tmp_path: Path, name: str
) -> None:
    checkpoint = make_checkpoint(name)
    exported = tmp_path / "model.ts"
    assert "TorchScript" in _export(runner, checkpoint, exported)
    files = {"geotiler.json": ""}
    torch.jit.load(str(exported), _extra_files=files)
    meta = json.loads(files["geotiler.json"])
    assert meta["bands"] == BANDS and meta["classes"]["classes"][2]["name"] == "water"
    assert meta["torchscript"] == "scripted" and meta["model"]["architecture"] == name
    reference = _predict(runner, scene, checkpoint, tmp_path / "torch.tif")
    scripted = _predict(runner, scene, exported, tmp_path / "ts.tif")
    assert (reference == scripted).mean() >= 0.999
    assert len(np.unique(reference[10:])) > 1  # a real map, not one class everywhere


def test_a_model_that_does_not_script_is_traced(
    runner: CliRunner,
    make_checkpoint: MakeCheckpoint,
    scene: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise RuntimeError("not scriptable")

    checkpoint = make_checkpoint("unet")
    monkeypatch.setattr(torch.jit, "script", refuse)
    exported = tmp_path / "traced.torchscript"
    _export(runner, checkpoint, exported)
    files = {"geotiler.json": ""}
    torch.jit.load(str(exported), _extra_files=files)
    assert json.loads(files["geotiler.json"])["torchscript"] == "traced"
    # A TorchScript archive is recognised by its content, whatever its name.
    renamed = tmp_path / "traced_model.pt"
    shutil.copy(exported, renamed)
    reference = _predict(runner, scene, checkpoint, tmp_path / "torch.tif")
    assert (reference == _predict(runner, scene, renamed, tmp_path / "tr.tif")).mean() >= 0.999


def test_unknown_export_format_is_an_error_not_onnx(
    runner: CliRunner, make_checkpoint: MakeCheckpoint, tmp_path: Path
) -> None:
    checkpoint = make_checkpoint("unet")
    for output in (tmp_path / "model.torch", tmp_path / "model"):
        result = runner.invoke(app, ["export", str(checkpoint), "-o", str(output)])
        assert result.exit_code == 1
        assert "unknown export format" in result.output and ".ts (TorchScript)" in result.output
        assert not output.exists()
    itself = runner.invoke(app, ["export", str(checkpoint), "-o", str(checkpoint), "--overwrite"])
    assert itself.exit_code == 1 and "the checkpoint itself" in itself.output
    (tmp_path / "bad.ts").write_bytes(b"not a model")
    args = ["predict", "x.tif", "-o", str(tmp_path / "m.tif"), "-m", str(tmp_path / "bad.ts")]
    bad = runner.invoke(app, args)
    assert bad.exit_code == 1 and "bad.ts: is a text file, not a model" in bad.output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unet", "tiny-segformer"])
def test_onnx_export_names_its_axes_and_predicts_the_checkpoint_map(
    runner: CliRunner, make_checkpoint: MakeCheckpoint, scene: Path, tmp_path: Path, name: str
) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    checkpoint = make_checkpoint(name)
    exported = tmp_path / "model.onnx"
    _export(runner, checkpoint, exported)
    graph = onnx.load(str(exported)).graph
    for value in (graph.input[0], graph.output[0]):
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert dims[0] == "batch" and dims[2:] == ["height", "width"], dims
    reference = _predict(runner, scene, checkpoint, tmp_path / "torch.tif")
    assert (reference == _predict(runner, scene, exported, tmp_path / "onnx.tif")).mean() >= 0.999
