"""`geotiler info` on model files, and model files told apart from what is given by mistake."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geotiler.catalog import ClassInfo, ClassTable
from geotiler.cli import app
from geotiler.errors import InputError
from geotiler.model_files import describe_model, model_format
from geotiler.train.checkpoint import save_checkpoint
from geotiler.train.models import get_model

CLASSES = ClassTable(
    name="toy",
    nodata=0,
    classes=(
        ClassInfo(id=1, name="field", color="#ffff00"),
        ClassInfo(id=2, name="forest", color="#00aa00"),
        ClassInfo(id=3, name="open water", color="#0000ff"),
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
        "model": {"preset": "unet-small", "architecture": "unet", "arguments": arguments},
        "bands": BANDS, "band_mean": [300.0] * 3, "band_std": [100.0] * 3,
        "classes": CLASSES.model_dump(mode="json"), "num_classes": 4, "nodata": 0,
        "tile_size": 32, "epoch": 7, "metrics": {"val_miou": 0.41, "train_loss": 0.9},
        "best": {"epoch": 5, "val_miou": 0.4321, "val_iou_2": 0.55},
        "settings": {"epochs": 7, "lr": 0.0003, "loss": "ce"},
    }  # fmt: skip
    return save_checkpoint(tmp_path / "run" / "best.pt", payload)


def _info(runner, path: Path) -> str:
    result = runner.invoke(app, ["info", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def _check_description(output: str) -> None:
    for expected in ("unet", "widths=[8, 16]", "3 (B02, B03, B04)", "32 px", "open water"):
        assert expected in output, (expected, output)
    assert "val_miou 0.4321" in output and "0.550" in output  # best metrics, per class
    assert "lr" in output and "0.0003" in output  # a training setting


def test_info_describes_a_checkpoint(runner, checkpoint) -> None:
    output = _info(runner, checkpoint)
    _check_description(output)
    assert "geotiler checkpoint" in output and "epochs done" in output


def test_info_describes_a_torchscript_export(runner, checkpoint, tmp_path) -> None:
    exported = tmp_path / "model.ts"
    result = runner.invoke(app, ["export", str(checkpoint), "-o", str(exported), "-q"])
    assert result.exit_code == 0, result.output
    assert model_format(exported) == "torchscript"
    # Found by content too, whatever the suffix.
    renamed = exported.rename(tmp_path / "model.bin")
    output = _info(runner, renamed)
    _check_description(output)
    assert "TorchScript" in output


@pytest.mark.slow
def test_info_describes_an_onnx_export(runner, checkpoint, tmp_path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    exported = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", str(checkpoint), "-o", str(exported), "-q"])
    assert result.exit_code == 0, result.output
    output = _info(runner, exported)
    _check_description(output)
    assert "ONNX" in output


def test_a_raster_given_as_model_is_one_clear_line(runner, write_raster, tmp_path) -> None:
    mask = write_raster("mask.tif", np.ones((40, 40), np.uint8))
    scene = write_raster("scene.tif", np.ones((3, 40, 40), np.uint16))
    args = ["predict", str(scene), "-o", str(tmp_path / "map.tif"), "--model", str(mask)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "mask.tif: is a GeoTIFF (a raster), not a model; give a checkpoint" in lines[0]
    assert "PyTorch" not in lines[0] and "weights_only" not in lines[0]
    assert lines[0].endswith("written by geotiler export")  # whole, not cut mid-word


def test_model_format_refuses_other_files(tmp_path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(InputError, match=r"notes\.pt: is a text file, not a model"):
        model_format(text)
    with pytest.raises(InputError, match="is a folder"):
        model_format(tmp_path)
    with pytest.raises(InputError, match="model file not found"):
        describe_model(tmp_path / "absent.pt")


def test_info_of_a_corrupt_checkpoint_is_one_line(runner, checkpoint, tmp_path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(checkpoint.read_bytes()[:500])
    result = runner.invoke(app, ["info", str(corrupt)])
    assert result.exit_code == 1 and "corrupt.pt" in result.output
