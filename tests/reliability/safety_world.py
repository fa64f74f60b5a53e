"""A tiny world for the reliability catalogue: a scene, its mask, a class table, a checkpoint,
a tile store, and helpers that run geotiler as a user would (CLI, or a separate process).

(Not a ``conftest.py``: a second module named ``conftest`` would shadow ``tests/conftest.py``
for the modules that import helpers from it; each test module declares its ``world`` fixture.)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from click.testing import Result
from typer.testing import CliRunner

from geotiler.cli import app

REPO = Path(__file__).resolve().parents[2]
CLASSES_YAML = """
nodata: 0
classes:
  - {id: 1, name: field, color: "#f2e35a"}
  - {id: 2, name: forest, color: "#1e6b2a"}
  - {id: 3, name: water, color: "#1f78d1", tags: [water]}
"""
PRESET = "architecture: unet\narguments: {widths: [4, 8]}\ntrain: {batch_size: 8, lr: 0.01}\n"
BANDS = ("B02", "B03", "B04")
TRANSFORM = Affine(10, 0, 240000, 0, -10, 4780000)


@dataclass(frozen=True)
class World:
    """Files of a tiny project in ``root``; ``user`` is a folder of the user's own files."""

    root: Path
    scene: Path
    mask: Path
    classes: Path
    preset: Path
    checkpoint: Path
    user: Path

    def tile_args(self, out: Path, *more: str) -> list[str]:
        return [
            "tile", str(self.scene), "--mask", str(self.mask), "--classes", str(self.classes),
            "--size", "16", "--split", "block:0.6,0.4,0", "--block-tiles", "1", "-o", str(out),
            "--quiet", *more,
        ]  # fmt: skip

    def predict_args(self, out: Path, *more: str) -> list[str]:
        return ["predict", str(self.scene), "-m", str(self.checkpoint), "-o", str(out), "-q", *more]

    def rescale_args(self, out: Path, *more: str) -> list[str]:
        return ["rescale", str(self.mask), "--like", str(self.scene), "-o", str(out), "-q", *more]

    def train_args(self, store: Path, out: Path, *more: str) -> list[str]:
        return [
            "train", str(store), "-m", str(self.preset), "--epochs", "1", "--batch-size", "4",
            "-o", str(out), "--quiet", *more,
        ]  # fmt: skip


def write_tif(path: Path, data: np.ndarray, **profile: Any) -> Path:
    bands, rows, cols = data.shape
    options = {
        "driver": "GTiff", "height": rows, "width": cols, "count": bands, "dtype": data.dtype.name,
        "crs": "EPSG:32631", "transform": TRANSFORM, "tiled": True, "blockxsize": 16,
        "blockysize": 16, "compress": "deflate", **profile,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **options) as dst:
        dst.write(data)
    return path


def make_world(root: Path, *, size_px: int = 64) -> World:
    rng = np.random.default_rng(0)
    coarse = rng.integers(1, 4, size=(size_px // 8 + 1, size_px // 8 + 1))
    labels = np.kron(coarse, np.ones((8, 8), np.int64))[:size_px, :size_px].astype(np.uint8)
    labels[:, :4] = 0
    image = np.stack(
        [np.where(labels == b + 1, 3000, 800) + rng.normal(0, 150, labels.shape) for b in range(3)]
    )
    scene = write_tif(root / "scene.tif", image.clip(1, 6000).astype(np.uint16), nodata=0)
    with rasterio.open(scene, "r+") as dataset:
        dataset.descriptions = BANDS
    mask = write_tif(root / "mask.tif", labels[np.newaxis], nodata=0)
    classes = root / "classes.yaml"
    classes.write_text(CLASSES_YAML)
    preset = root / "tiny.yaml"
    preset.write_text(PRESET)
    user = root / "project"
    user.mkdir()
    (user / "notes.txt").write_text("my notes")
    (user / "field-survey.csv").write_text("plot,class\n1,forest\n")
    return World(root, scene, mask, classes, preset, make_checkpoint(root / "model.pt"), user)


def make_checkpoint(path: Path, **changes: Any) -> Path:
    """A small checkpoint of an untrained U-Net for the world's bands and classes."""
    import torch

    from geotiler.catalog import ClassTable
    from geotiler.train.checkpoint import save_checkpoint
    from geotiler.train.models import get_model

    torch.manual_seed(0)
    arguments = {"widths": [4, 8]}
    model = get_model("unet", in_channels=3, num_classes=4, **arguments)
    table = ClassTable.model_validate({"name": "toy", **_yaml(CLASSES_YAML)})
    payload = {
        "state_dict": model.state_dict(),
        "model": {"preset": "test", "architecture": "unet", "arguments": arguments},
        "bands": list(BANDS),
        "band_mean": [1500.0] * 3,
        "band_std": [900.0] * 3,
        "classes": table.model_dump(mode="json"),
        "num_classes": 4,
        "nodata": 0,
        "tile_size": 16,
        **changes,
    }
    return save_checkpoint(path, payload)


def _yaml(text: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(text)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line(result: Result, *needles: str, code: int = 1) -> str:
    """The command failed with exit ``code`` and exactly one line saying ``needles``."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(("error:", "interrupted:"))]
    assert len(said) == 1, result.output
    for needle in needles:
        assert needle in said[0], said[0]
    return said[0]


def digest(path: Path) -> str:
    """A hash of a file, or of every file in a folder (names and bytes)."""
    sha = hashlib.sha256()
    if path.is_file():
        sha.update(path.read_bytes())
        return sha.hexdigest()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        sha.update(str(item.relative_to(path)).encode())
        sha.update(item.read_bytes())
    return sha.hexdigest()


def geotiler_process(*args: str | Path, **options: Any) -> subprocess.Popen[bytes]:
    """``python -m geotiler ARGS`` in a process of its own (for signals and kills)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **options.pop("env", {})}
    return subprocess.Popen(
        [sys.executable, "-m", "geotiler", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **options,
    )


def read_pixels(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()
