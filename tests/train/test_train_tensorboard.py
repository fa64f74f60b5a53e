"""TensorBoard events: tags grouped by split and class name, validation tiles drawn every epoch."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from geotiler.train.settings import TrainSettings
from geotiler.train.tensorboard import TILES_SHOWN, scalar_tag
from geotiler.train.trainer import train


@pytest.mark.parametrize(
    ("key", "tag"),
    [
        ("train_loss", "train/loss"),
        ("val_loss", "val/loss"),
        ("val_miou", "val/miou"),
        ("val_iou_2", "val/iou/forest"),
        ("val_dice_3", "val/dice/watercourses_and_water_bodies"),
        ("baseline_val_miou", "val/miou_baseline"),
        ("lr", "lr"),
        ("tiles_per_s", "time/tiles_per_s"),
    ],
)
def test_metrics_columns_become_grouped_tags(key: str, tag: str) -> None:
    names = {2: "forest", 3: "Watercourses and water bodies"}
    assert scalar_tag(key, names) == tag


def test_a_run_writes_grouped_scalars_and_validation_tiles(
    fake_store: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard")
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    preset = tmp_path / "tiny.yaml"
    preset.write_text("architecture: unet\narguments: {widths: [4, 8]}\n")
    settings = TrainSettings(model=str(preset), epochs=2, batch_size=4, lr=0.01, baseline=False)
    train(fake_store, tmp_path / "run", settings)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "val/loss", "val/miou", "val/iou/forest", "lr"} <= scalars
    assert not any("_iou_" in tag or tag.startswith("val_") for tag in scalars)
    assert [e.step for e in events.Scalars("val/miou")] == [1, 2]
    shown = events.Images("val/tiles")
    assert [e.step for e in shown] == [1, 2]
    picture = np.asarray(Image.open(io.BytesIO(shown[-1].encoded_image_string)))
    # Rows of scene | reference | prediction, 36 px tiles with 2 px white gaps.
    rows = min(TILES_SHOWN, 4)
    assert picture.shape[:2] == (rows * 36 + (rows - 1) * 2, 3 * 36 + 2 * 2)
    forest = (0x1E, 0x6B, 0x2A)  # the fake store's forest colour, in the reference panel
    reference = picture[:36, 38:74, :3]
    assert (reference == forest).all(axis=-1).any()
