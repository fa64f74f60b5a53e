"""Reading a scene's rows for tiling: image, mask, valid and cloudy pixels, once per block.

Reading is organised in *units*: a run of consecutive tile rows of one scene. A :class:`RowBuffer`
streams each scene's rows once, in windows aligned to the source's blocks (Dask tasks read pieces
in parallel; a small scene is read whole in one piece, and small scenes are read in parallel
with each other instead), keeping only the rows that the next tiles still need, so no block is
decoded twice and memory does not grow with the scene.

The mask is read on the scene's grid through its :class:`~geotiler.tiles.masks.MaskReader` (class
ids or RGB colours, at the image's resolution or resampled).

Cloud fraction: from the dataset's cloud mask when there is one (1 cloud, 2 shadow, 0 clear), else a
spectral test on the visible bands B02, B03, B04: a pixel is cloudy when it is *bright* (mean of the
three above ``cloud_brightness``, 3000 = reflectance 0.3 at Sentinel-2's 10000 scale) and *white*
(``(max - min) / mean`` of the three below ``cloud_whiteness``). Without either, it is NaN.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import dask
import numpy as np
from rasterio.windows import Window

from geotiler.errors import RasterError
from geotiler.parallel import runs_in_this_process
from geotiler.tiles.files import open_file
from geotiler.tiles.masks import MaskReader

VISIBLE_BANDS = ("B02", "B03", "B04")
CLOUD_VALUES = (1, 2)
MIN_TASKS = 4
# Pieces read per Dask call on a cluster: bounds the decoded data in flight on wide scenes.
PIECES_IN_FLIGHT = 4
PIECE_ROWS = 512
SMALL_SCENE_BYTES = 16 * 2**20
"""A scene this small is read whole in one piece (its tiles are cut beside other scenes')."""


@dataclass(frozen=True)
class Sources:
    """What one scene's tiles are read from, and how pixels are judged (picklable for Dask)."""

    scene: str
    mask: MaskReader
    clouds: str | None
    scene_nodata: float | None
    mask_nodata: int | None
    num_classes: int
    visible: tuple[int, ...] = ()
    cloud_brightness: float = 3000.0
    cloud_whiteness: float = 0.2


def read_piece(sources: Sources, window: Window) -> tuple[np.ndarray, ...]:
    """Image, mask (uint8, nodata where invalid), valid and cloudy pixels of one window.

    Without a cloud test the last array is ``(0, 0)``.
    """
    try:
        with open_file(sources.scene) as scene:
            image = scene.read(window=window)
    except RasterError:
        raise
    except Exception as exc:  # GDAL's read errors (truncated, corrupt data) name no file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RasterError(
            f"{sources.scene}: reading it failed ({reason}); the file is truncated or corrupt"
        ) from exc
    mask = sources.mask.read(window)
    clouds = np.zeros((0, 0), dtype=bool)
    if sources.clouds is not None:
        with open_file(sources.clouds) as cloud_file:
            clouds = np.isin(cloud_file.read(1, window=window), CLOUD_VALUES)
    elif sources.visible:
        clouds = spectral_clouds(
            image[list(sources.visible)], sources.cloud_brightness, sources.cloud_whiteness
        )
    valid = _valid_pixels(image, mask, sources)
    if sources.mask_nodata is not None:
        # Pixels without imagery carry no usable label either.
        mask = np.where(valid, mask, np.uint8(sources.mask_nodata))
    return image, mask, valid, clouds


def _valid_pixels(image: np.ndarray, mask: np.ndarray, sources: Sources) -> np.ndarray:
    valid = np.ones(mask.shape, dtype=bool)
    if sources.mask_nodata is not None:
        valid &= mask != sources.mask_nodata
    if sources.scene_nodata is not None:
        if np.isnan(sources.scene_nodata):
            valid &= ~np.isnan(image).all(axis=0)
        else:
            valid &= ~(image == sources.scene_nodata).all(axis=0)
    return valid


def spectral_clouds(visible: np.ndarray, brightness: float, whiteness: float) -> np.ndarray:
    """Bright and white pixels of the ``(3, rows, cols)`` visible bands (see module docstring)."""
    values = visible.astype(np.float32)
    mean = values.mean(axis=0)
    spread = values.max(axis=0) - values.min(axis=0)
    return (mean > brightness) & (spread < whiteness * np.maximum(mean, 1e-6))


class RowBuffer:
    """Full-width rows of one scene, read once in block-aligned windows and kept while needed.

    :meth:`need` makes rows ``top..bottom`` available (reading ahead to the next block boundary,
    so a block that two tile rows share is decoded once) and forgets the rows above ``top``. The
    rows live in one preallocated buffer of ``capacity`` rows (the tallest unit plus one block).
    """

    def __init__(
        self,
        sources: Sources,
        *,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        block: tuple[int, int],
        capacity: int,
        piece_cols: int,
    ) -> None:
        self.sources = sources
        bands, self.height, self.width = shape
        self.block_rows = block[0]
        piece = max(block[1], piece_cols // block[1] * block[1])
        self.col_starts = list(range(0, self.width, piece))
        self.piece_cols = piece
        self.capacity = capacity + self.block_rows
        self.image = np.empty((bands, self.capacity, self.width), dtype)
        self.mask = np.empty((self.capacity, self.width), np.uint8)
        self.valid = np.empty((self.capacity, self.width), bool)
        has_clouds = sources.clouds is not None or bool(sources.visible)
        self.clouds = np.empty((self.capacity, self.width) if has_clouds else (0, 0), bool)
        self.top = 0
        self.rows = 0
        self.small = bands * self.height * self.width * dtype.itemsize <= SMALL_SCENE_BYTES

    def need(self, top: int, bottom: int) -> int:
        """Hold rows ``top..bottom`` (``bottom`` exclusive); returns the buffer row of ``top``."""
        if top >= self.top + self.rows or top < self.top:
            # Nothing to keep: start at ``top`` (GDAL decodes its block whole either way).
            self.top, self.rows = top, 0
        elif top > self.top:
            self._shift(top - self.top)
        end = self.top + self.rows
        if bottom > end:
            stop = min(self.height, -(-bottom // self.block_rows) * self.block_rows)
            if stop - self.top > self.capacity:
                raise ValueError(f"rows {top}..{bottom} do not fit the buffer")
            self._read(end, stop)
        return top - self.top

    def _shift(self, drop: int) -> None:
        keep = self.rows - drop
        for arrays in ((self.mask, self.valid, self.clouds), tuple(self.image)):
            for array in arrays:
                if array.size:
                    # Move rows up in steps that do not overlap (no temporary copy).
                    for start in range(0, keep, drop):
                        stop = min(start + drop, keep)
                        array[start:stop] = array[drop + start : drop + stop]
        self.top += drop
        self.rows = keep

    def _read(self, start: int, stop: int) -> None:
        windows = [
            Window(col, row, min(self.piece_cols, self.width - col), end - row)
            for row, end in self._row_pieces(start, stop)
            for col in self.col_starts
        ]
        if self.small:
            self._read_and_store(Window(0, start, self.width, stop - start))
        elif runs_in_this_process():
            # Each task stores its own piece (disjoint rows and columns; numpy copies release the
            # GIL), so the threads decode without pausing for the caller to store a group.
            dask.compute(*(dask.delayed(self._read_and_store)(w) for w in windows))
        else:
            for first in range(0, len(windows), PIECES_IN_FLIGHT):
                group = windows[first : first + PIECES_IN_FLIGHT]
                pieces = dask.compute(*(dask.delayed(read_piece)(self.sources, w) for w in group))
                self._store(group, pieces)
        self.rows = stop - self.top

    def _read_and_store(self, window: Window) -> None:
        self._store([window], (read_piece(self.sources, window),))

    def _store(self, windows: list[Window], pieces: tuple[tuple[np.ndarray, ...], ...]) -> None:
        for window, (image, mask, valid, clouds) in zip(windows, pieces, strict=True):
            at = slice(window.row_off - self.top, window.row_off + window.height - self.top)
            cols = slice(window.col_off, window.col_off + window.width)
            self.image[:, at, cols] = image
            self.mask[at, cols] = mask
            self.valid[at, cols] = valid
            if self.clouds.size:
                self.clouds[at, cols] = clouds

    def _row_pieces(self, start: int, stop: int) -> list[tuple[int, int]]:
        """Block-aligned row ranges of about ``PIECE_ROWS``, at least ``MIN_TASKS`` pieces."""
        blocks = -(-(stop - start) // self.block_rows)
        parts = max(
            -(-MIN_TASKS // len(self.col_starts)), -(-blocks * self.block_rows // PIECE_ROWS)
        )
        step = max(1, -(-blocks // parts)) * self.block_rows
        edges = [start, *range(start - start % self.block_rows + step, stop, step), stop]
        return [(a, b) for a, b in itertools.pairwise(edges) if b > a]
