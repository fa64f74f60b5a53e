"""What the training recipe knows about a store: its fingerprint and robust band statistics.

:class:`DataFingerprint` is read from the store's index through the :class:`~geotiler.store.
TileStore` reading API (no tile is read): tiles per split, tile size, bands and dtype, classes
and their pixel counts in the training split, the labelled share of the training pixels, cloudy
tiles and whether tile sampling is already balanced.

:func:`robust_band_stats` reads a bounded sample of training tiles (the least cloudy first) and
gives per band a clip range, the 1st-99th percentiles, and the mean and standard deviation of
the values inside both that range and Tukey's far-out fences (3 IQR beyond the quartiles): clouds,
sensor spikes and fill values (pixels zero in every band) do not move the statistics even when
they cover more than 1 % of the pixels. The clip range itself is not narrowed to the fences: a
rare bright class (a quarry, roofs) keeps its contrast up to the 99th percentile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geotiler.errors import InputError
from geotiler.train import data as train_data

STATS_TILES = 64
STATS_PIXELS = 400_000
CLEAR_CLOUD_FRACTION = 0.1
FENCE_IQR = 3.0


@dataclass(frozen=True)
class BandNorm:
    """Per-band normalisation: clip to [low, high] (when given), then (x - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    def to_checkpoint(self) -> dict[str, Any]:
        """The checkpoint keys ``band_mean``, ``band_std`` and, when clipping, ``band_low/high``."""
        out: dict[str, Any] = {"band_mean": list(self.mean), "band_std": list(self.std)}
        if self.low is not None and self.high is not None:
            out |= {"band_low": list(self.low), "band_high": list(self.high)}
        return out

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any]) -> BandNorm:
        low, high = meta.get("band_low"), meta.get("band_high")
        return cls(
            tuple(float(v) for v in meta["band_mean"]),
            tuple(float(v) for v in meta["band_std"]),
            None if low is None else tuple(float(v) for v in low),
            None if high is None else tuple(float(v) for v in high),
        )


@dataclass(frozen=True)
class DataFingerprint:
    """A store as the recipe sees it (see the module docstring)."""

    path: Path
    bands: tuple[str, ...]
    dtype: str
    tile_size: int
    num_classes: int
    nodata: int | None
    class_ids: tuple[int, ...]
    train_ids: np.ndarray
    val_ids: np.ndarray
    tile_class_counts: np.ndarray  # (train tiles, K) labelled pixels per class
    cloud_fraction: np.ndarray | None  # per train tile, None when the store has no cloud data
    balanced: bool  # the train split's sampling weights are not uniform
    pixel_weight: np.ndarray | None = None  # per train tile, for the baseline (see read)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> DataFingerprint:
        store = train_data.open_store(path)
        train = np.asarray(store.indices("train"), dtype=np.int64)
        val = np.asarray(store.indices("val"), dtype=np.int64)
        for name, ids in (("train", train), ("val", val)):
            if len(ids) == 0:
                raise InputError(
                    f"{store.path}: no kept tiles in the {name!r} split; re-run `geotiler tile` "
                    "with a larger scene, laxer --filter settings or a --split that gives "
                    f"{name} a share"
                )
        counts = np.asarray(store.column("class_counts"), dtype=np.int64)[train]
        nodata = store.nodata
        if nodata is not None and nodata < counts.shape[1]:
            counts[:, nodata] = 0
        valid = np.asarray(store.column("valid_px"), dtype=np.float64)[train]
        cloudy = np.asarray(store.column("cloudy_px"), dtype=np.float64)[train]
        cloud = (
            None if (cloudy < 0).all() else np.where(cloudy < 0, 0, cloudy) / np.maximum(valid, 1)
        )
        weights = np.asarray(store.sampling_weights(train), dtype=np.float64)
        return cls(
            pixel_weight=_corrected_pixel_weight(store.sources[train], weights),
            path=Path(store.path),
            bands=tuple(store.bands),
            dtype=str(np.dtype(store.image_dtype)),
            tile_size=int(store.tile_size),
            num_classes=int(store.num_classes),
            nodata=nodata,
            class_ids=tuple(int(c) for c in store.classes.ids),
            train_ids=train,
            val_ids=val,
            tile_class_counts=counts,
            cloud_fraction=cloud,
            balanced=bool(len(weights) and not np.allclose(weights, weights[0])),
        )

    @property
    def train_tiles(self) -> int:
        return len(self.train_ids)

    @property
    def val_tiles(self) -> int:
        return len(self.val_ids)

    @property
    def class_pixels(self) -> np.ndarray:
        """Labelled training pixels per class id (K,)."""
        return self.tile_class_counts.sum(axis=0)

    @property
    def labelled_pixels(self) -> int:
        return int(self.class_pixels.sum())

    @property
    def labelled_share(self) -> float:
        """Labelled share of the training tiles' pixels."""
        return self.labelled_pixels / max(1, self.train_tiles * self.tile_size**2)

    @property
    def present_classes(self) -> int:
        return int((self.class_pixels > 0).sum())

    def describe(self) -> dict[str, Any]:
        """Plain values for the saved plan."""
        pixels = self.class_pixels
        return {
            "train_tiles": self.train_tiles,
            "val_tiles": self.val_tiles,
            "tile_size": self.tile_size,
            "bands": list(self.bands),
            "dtype": self.dtype,
            "classes_present": self.present_classes,
            "labelled_share": round(self.labelled_share, 4),
            "class_share": {
                int(c): round(float(pixels[c]) / max(1, self.labelled_pixels), 5)
                for c in self.class_ids
                if c < len(pixels) and pixels[c] > 0
            },
            "cloudy_tiles": None
            if self.cloud_fraction is None
            else int((self.cloud_fraction > CLEAR_CLOUD_FRACTION).sum()),
            "balanced_sampling": self.balanced,
        }


def robust_band_stats(
    fingerprint: DataFingerprint, *, seed: int = 0, max_tiles: int = STATS_TILES
) -> BandNorm:
    """Clip range and the mean/std inside it per band, from clear train tiles (module doc)."""
    store = train_data.open_store(fingerprint.path)
    ids = fingerprint.train_ids
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    if fingerprint.cloud_fraction is not None:  # the clearest tiles first, random among equals
        cloud = fingerprint.cloud_fraction[order]
        order = order[np.argsort(cloud > CLEAR_CLOUD_FRACTION, kind="stable")]
    chosen = ids[order[:max_tiles]]
    per_tile = max(1, STATS_PIXELS // max(1, len(chosen)))
    samples = []
    for tile_id in chosen:
        image, _ = store.read(int(tile_id))
        values = image.reshape(image.shape[0], -1).astype(np.float64)
        usable = np.isfinite(values).all(axis=0) & (values != 0).any(axis=0)  # not fill
        columns = np.flatnonzero(usable)
        if len(columns) > per_tile:
            columns = rng.choice(columns, per_tile, replace=False)
        samples.append(values[:, columns])
    pixels = np.concatenate(samples, axis=1) if samples else np.zeros((len(fingerprint.bands), 0))
    if pixels.shape[1] == 0:
        raise InputError(f"{fingerprint.path}: the training tiles hold no valid image pixel")
    low, q1, q3, high = np.percentile(pixels, [1, 25, 75, 99], axis=1)
    bottom = np.maximum(low, q1 - FENCE_IQR * (q3 - q1))
    top = np.minimum(high, q3 + FENCE_IQR * (q3 - q1))
    inside = (pixels >= bottom[:, None]) & (pixels <= top[:, None])
    means, stds = [], []
    for band, keep in zip(pixels, inside, strict=True):
        values = band[keep] if keep.any() else band
        means.append(float(values.mean()))
        stds.append(float(values.std()) or 1.0)
    return BandNorm(
        mean=tuple(means),
        std=tuple(stds),
        low=tuple(float(v) for v in low),
        high=tuple(float(v) for v in high),
    )


__all__ = ["BandNorm", "DataFingerprint", "robust_band_stats"]


def _corrected_pixel_weight(sources: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """How much a pixel of each train tile counts in the pixel baseline; None when all count 1.

    Corrected tiles (``train --corrections``) are drawn more often than the tiles they correct
    (their sampling weight over the largest of the cut tiles'); the baseline, which samples
    pixels by class, gives their pixels that weight instead, so a correction moves both members.
    Class balancing stays the baseline's own (its per-class rates), not the sampling weights.
    """
    corrected = np.asarray(sources) == 1
    if not corrected.any():
        return None
    top = float(weights[~corrected].max()) if (~corrected).any() else 1.0
    out = np.ones(len(weights), np.float64)
    out[corrected] = np.maximum(1.0, weights[corrected] / max(top, 1e-12))
    return out
