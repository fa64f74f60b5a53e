"""Cutting a unit's tiles out of a :class:`~geotiler.tiles.read.RowBuffer` with their statistics.

A numba kernel copies a unit's tiles straight into one array and computes their statistics in the
same pass (class pixel counts, valid and cloudy pixels, per-band sums and sums of squares). Tiles
without a valid pixel are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from geotiler.errors import InputError
from geotiler.tiles.read import RowBuffer, Sources


@dataclass
class TileBatch:
    """Tiles cut from one window with their statistics (rows are tiles)."""

    rows: np.ndarray
    cols: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    valid_px: np.ndarray
    cloudy_px: np.ndarray
    class_counts: np.ndarray
    band_sum: np.ndarray
    band_sumsq: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, start: int, stop: int | None = None) -> TileBatch:
        """The tiles ``start:stop`` (views)."""
        return TileBatch(*(getattr(self, name)[start:stop] for name in _BATCH_FIELDS))

    def copy(self) -> TileBatch:
        """A copy owning its memory."""
        return TileBatch(*(getattr(self, name).copy() for name in _BATCH_FIELDS))

    @classmethod
    def concat(cls, batches: Sequence[TileBatch]) -> TileBatch:
        return cls(*(np.concatenate([getattr(b, n) for b in batches]) for n in _BATCH_FIELDS))


_BATCH_FIELDS = (
    "rows",
    "cols",
    "images",
    "masks",
    "valid_px",
    "cloudy_px",
    "class_counts",
    "band_sum",
    "band_sumsq",
)


class TileArrays:
    """Tile image and mask arrays reused from unit to unit (fresh ones cost page faults).

    A batch cut into them is only valid until the next cut into the same arrays, so a
    consumer must copy what it keeps (the store writer does).
    """

    def __init__(self) -> None:
        self._images: np.ndarray | None = None
        self._masks: np.ndarray | None = None

    def take(
        self, n: int, bands: int, size_px: int, dtype: np.dtype
    ) -> tuple[np.ndarray, np.ndarray]:
        images, masks = self._images, self._masks
        if images is None or masks is None or len(images) < n or images.dtype != dtype:
            images = np.empty((n, bands, size_px, size_px), dtype)
            masks = np.empty((n, size_px, size_px), np.uint8)
            self._images, self._masks = images, masks
        return images[:n], masks[:n]


def cut_unit(
    sources: Sources,
    buffer: RowBuffer,
    tiles: np.ndarray,
    size_px: int,
    arrays: TileArrays | None = None,
) -> TileBatch:
    """Cut the tiles ``(n, 2)`` of one unit from ``buffer`` with their statistics.

    With ``arrays`` the batch's images and masks live in them (see :class:`TileArrays`).
    """
    bands = buffer.image.shape[0]
    if len(tiles) == 0:
        return empty_batch(bands, size_px, sources.num_classes, buffer.image.dtype)
    first = buffer.need(int(tiles[:, 0].min()), int(tiles[:, 0].max()) + size_px)
    local = tiles.copy()
    local[:, 0] += first - int(tiles[:, 0].min())
    n = len(tiles)
    small_int = buffer.image.dtype.kind in "ui" and buffer.image.dtype.itemsize <= 2
    accumulator = np.int64 if small_int else np.float64
    images, masks = (arrays or TileArrays()).take(n, bands, size_px, buffer.image.dtype)
    kept = np.empty(n, np.int64)
    valid_px = np.zeros(n, np.int64)
    cloudy_px = np.full(n, -1, np.int64)
    counts = np.zeros((n, sources.num_classes), np.int64)
    sums = np.zeros((n, bands), accumulator)
    sumsq = np.zeros((n, bands), accumulator)
    n_kept, bad = _cut_kernel(
        buffer.image, buffer.mask, buffer.valid, buffer.clouds, local, size_px,
        images, masks, kept, valid_px, cloudy_px, counts, sums, sumsq,
    )  # fmt: skip
    if bad >= 0:
        raise InputError(
            f"{sources.mask.path}: mask value {bad} is not a class of the class table "
            f"(classes 0..{sources.num_classes - 1}); pass --classes or --nodata"
        )
    if n_kept == 0:
        return empty_batch(bands, size_px, sources.num_classes, buffer.image.dtype)
    return TileBatch(
        rows=tiles[kept[:n_kept], 0],
        cols=tiles[kept[:n_kept], 1],
        images=images[:n_kept],
        masks=masks[:n_kept],
        valid_px=valid_px[:n_kept],
        cloudy_px=cloudy_px[:n_kept],
        class_counts=counts[:n_kept],
        band_sum=sums[:n_kept].astype(np.float64),
        band_sumsq=sumsq[:n_kept].astype(np.float64),
    )


@njit(nogil=True, cache=True)
def _cut_kernel(
    image: np.ndarray,
    mask: np.ndarray,
    valid: np.ndarray,
    clouds: np.ndarray,
    tiles: np.ndarray,
    size: int,
    images: np.ndarray,
    masks: np.ndarray,
    kept: np.ndarray,
    valid_px: np.ndarray,
    cloudy_px: np.ndarray,
    counts: np.ndarray,
    sums: np.ndarray,
    sumsq: np.ndarray,
) -> tuple[int, int]:
    """Copy the tiles with a valid pixel into ``images``/``masks`` (packed) and sum their stats.

    Returns ``(kept tiles, -1)``, or ``(0, value)`` for a valid pixel's value outside the classes.
    """
    k = 0
    classes = counts.shape[1]
    has_clouds = clouds.size > 0
    for t in range(tiles.shape[0]):
        r0, c0 = tiles[t, 0], tiles[t, 1]
        n_valid = 0
        for i in range(size):
            valid_row = valid[r0 + i, c0 : c0 + size]
            for j in range(size):
                n_valid += valid_row[j]
        if n_valid == 0:
            continue
        kept[k] = t
        valid_px[k] = n_valid
        cloudy = 0
        for i in range(size):
            valid_row = valid[r0 + i, c0 : c0 + size]
            mask_row = mask[r0 + i, c0 : c0 + size]
            mask_out = masks[k, i]
            for j in range(size):
                mask_out[j] = mask_row[j]
            for j in range(size):
                if valid_row[j]:
                    if mask_row[j] >= classes:
                        return 0, mask_row[j]
                    counts[k, mask_row[j]] += 1
            if has_clouds:
                cloud_row = clouds[r0 + i, c0 : c0 + size]
                for j in range(size):
                    cloudy += cloud_row[j] & valid_row[j]
        if has_clouds:
            cloudy_px[k] = cloudy
        # Branch-free sums (vectorised); integer accumulators are exact for 8/16-bit data.
        zero = sums[k, 0] * 0
        for b in range(image.shape[0]):
            total = zero
            squares = zero
            for i in range(size):
                source = image[b, r0 + i, c0 : c0 + size]
                valid_row = valid[r0 + i, c0 : c0 + size]
                image_out = images[k, b, i]
                for j in range(size):
                    image_out[j] = source[j]
                for j in range(size):
                    x = source[j] + zero if valid_row[j] else zero
                    total += x
                    squares += x * x
            sums[k, b] = total
            sumsq[k, b] = squares
        k += 1
    return k, -1


def empty_batch(bands: int, size_px: int, classes: int, dtype: np.dtype) -> TileBatch:
    return TileBatch(
        rows=np.zeros(0, np.int64),
        cols=np.zeros(0, np.int64),
        images=np.zeros((0, bands, size_px, size_px), dtype),
        masks=np.zeros((0, size_px, size_px), np.uint8),
        valid_px=np.zeros(0, np.int64),
        cloudy_px=np.zeros(0, np.int64),
        class_counts=np.zeros((0, classes), np.int64),
        band_sum=np.zeros((0, bands), np.float64),
        band_sumsq=np.zeros((0, bands), np.float64),
    )
