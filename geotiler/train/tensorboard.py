"""TensorBoard events of a run: scalars grouped by split, and validation tiles drawn every epoch.

Written when TensorBoard is installed (``pip install 'geotiler[tensorboard]'``), in
``RUN/tensorboard``. Tags group what TensorBoard shows side by side: ``train/loss``,
``val/loss``, ``val/miou``, ``val/iou/<class name>`` (and dice, precision, recall per class),
``val/miou_baseline``, ``lr``, ``time/...``; the image ``val/tiles`` holds a few validation tiles,
one per row: the scene in true colour (or its first three bands), the reference and the prediction
in the class table's colours (nodata black).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TILES_SHOWN = 4
"""Validation tiles drawn per epoch (the first of the validation split: the same every epoch)."""

_PER_CLASS = re.compile(r"^(train|val)_(iou|dice|precision|recall|support)_(\d+)$")
_MEMBER = re.compile(r"^(baseline|ensemble|network_compared)_val_(.+)$")
_SPLIT = re.compile(r"^(train|val)_(.+)$")
_TIME = {"seconds": "time/train_seconds", "tiles_per_s": "time/tiles_per_s"}


def scalar_tag(key: str, names: dict[int, str]) -> str:
    """The TensorBoard tag of a ``metrics.csv`` column (``val_iou_3`` -> ``val/iou/forest``)."""
    if match := _PER_CLASS.match(key):
        split, metric, class_id = match.groups()
        return f"{split}/{metric}/{_slug(names.get(int(class_id), class_id))}"
    if match := _MEMBER.match(key):
        member, metric = match.groups()
        return f"val/{metric}_{member}"
    if key in _TIME:
        return _TIME[key]
    if match := _SPLIT.match(key):
        split, metric = match.groups()
        return f"{split}/{metric}"
    return key


def _slug(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", name.strip()).strip("_").lower() or "class"


class Board:
    """A run's TensorBoard writer; every method does nothing when TensorBoard is not installed."""

    def __init__(self, run_dir: Path) -> None:
        self.writer: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: pip install geotiler[tensorboard]
            log.debug("tensorboard is not installed; metrics go to metrics.csv only")
            return
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    @property
    def active(self) -> bool:
        """Whether events are written (TensorBoard is installed)."""
        return self.writer is not None

    def scalars(self, row: dict[str, float], names: dict[int, str]) -> None:
        if self.writer is None:
            return
        step = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and np.isfinite(value):
                self.writer.add_scalar(scalar_tag(key, names), value, step)
        self.writer.flush()

    def tiles(
        self,
        epoch: int,
        image: np.ndarray,
        truth: np.ndarray,
        prediction: np.ndarray,
        *,
        bands: tuple[str, ...],
        classes: Any,
    ) -> None:
        """Draw tiles (``image`` N x C x H x W, ``truth`` / ``prediction`` N x H x W class ids)."""
        if self.writer is None or len(image) == 0:
            return
        picture = tile_panel(image, truth, prediction, bands=bands, classes=classes)
        self.writer.add_image("val/tiles", picture, epoch, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def tile_panel(
    image: np.ndarray,
    truth: np.ndarray,
    prediction: np.ndarray,
    *,
    bands: tuple[str, ...],
    classes: Any,
) -> np.ndarray:
    """Rows of ``scene | reference | prediction`` as one uint8 RGB picture (H x W x 3)."""
    palette = _palette(classes, int(max(truth.max(), prediction.max())) + 1)
    rgb = _rgb_indices(bands, image.shape[1])
    gap = 2
    rows = []
    for scene, want, got in zip(image, truth, prediction, strict=True):
        panels = [_stretch(scene[rgb]), palette[want], palette[got]]
        spacer = np.full((scene.shape[1], gap, 3), 255, np.uint8)
        rows.append(np.concatenate([panels[0], spacer, panels[1], spacer, panels[2]], axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


def _rgb_indices(bands: tuple[str, ...], count: int) -> list[int]:
    """Red, green and blue bands by name; else the first three (a grey image for fewer)."""
    from geotiler.figures import rgb_band_order

    return [number - 1 for number in rgb_band_order(bands, count)]


def _stretch(rgb: np.ndarray) -> np.ndarray:
    """C x H x W floats to H x W x C uint8, each band between its 2nd and 98th percentiles."""
    data = rgb.astype(np.float32)
    low, high = np.percentile(data, [2, 98], axis=(1, 2), keepdims=True)
    scaled = (data - low) / np.maximum(high - low, 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def _palette(classes: Any, size: int) -> np.ndarray:
    """Class id -> RGB from the class table's colours; other ids (nodata) black."""
    top = max([size, *(c.id + 1 for c in classes.classes)])
    palette = np.zeros((top, 3), np.uint8)
    for c in classes.classes:
        palette[c.id] = c.rgba[:3]
    return palette
