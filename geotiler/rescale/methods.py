"""Categorical resampling methods: how one output window of a rescale is computed.

A :class:`Plan` holds what every window of one run shares (source, target grid, method, nodata,
weights); a :class:`Unit` is one output window. Both are small picklable values, so the functions
here run unchanged in Dask's local threads or on a dask.distributed worker.

Two paths, per method (the :data:`METHODS` registry):

* exact: the source is an integer-factor refinement of the target (same CRS, pixel edges aligned).
  ``near`` reads only the source rows it samples, ``floor((i + 0.5) * f)`` as GDAL does; ``mode``
  and ``weighted-mode`` read the window's rows once and run the numba kernel of
  :mod:`geotiler.rescale.kernels`, which also counts the source pixels.
* warp: anything else (non-integer factor, another CRS) goes through GDAL's warper via
  :func:`rasterio.warp.reproject`, one output window at a time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from geotiler.grid import Grid
from geotiler.io import open_raster
from geotiler.rescale.rawstrips import RawStrips
from geotiler.rescale.smallmode import SMALL_PX, numpy_mode


@dataclass(frozen=True)
class Plan:
    """What every window of one rescale run shares."""

    source: str
    source_shape: tuple[int, int]
    dtype: str
    target: Grid
    method: str
    factor: int | None
    row_off: int
    col_off: int
    nodata: int
    has_nodata: bool
    n_values: int
    weights: np.ndarray
    token: str
    block_rows: int = 1  # the source's block height: mode reads whole blocks at a time


@dataclass(frozen=True)
class Unit:
    """One output window: target rows ``[row_start, row_stop)``, cols ``[col_start, col_stop)``."""

    row_start: int
    row_stop: int
    col_start: int
    col_stop: int

    @property
    def window(self) -> Window:
        return Window(
            self.col_start,
            self.row_start,
            self.col_stop - self.col_start,
            self.row_stop - self.row_start,
        )


@dataclass(frozen=True)
class UnitResult:
    """An output window's pixels and the histogram of the source pixels read (None: not read)."""

    unit: Unit
    data: np.ndarray
    source_hist: np.ndarray | None


UnitFunction = Callable[[Plan, Unit], UnitResult]
HIST_EVERY = 8
"""``near`` reads only the rows it samples; at most every 8th of them is counted in full for
the source histogram, fewer on a large mask (:func:`hist_every`)."""
HIST_SAMPLE_PX = 32_000_000
"""About how many source pixels ``near`` counts for its (sampled) source histogram."""
FAST_COUNT_PX = 300_000_000
"""A run counting at least this many pixels counts them with numba (:func:`counts_fast`)."""
PAIRS_FROM_PX = 1 << 16
"""Smaller uint8 arrays are counted by a plain ``np.bincount`` (its 65536 counters cost more)."""
CHUNK_BYTES = 1 << 20
"""Source bytes ``mode`` reads and reduces at a time: about what stays in a core's L2 cache."""


@dataclass(frozen=True)
class MethodSpec:
    """A resampling method: its exact block function and the GDAL resampling of the warp path."""

    exact: UnitFunction
    resampling: Resampling | None
    needs_integer: bool
    counts_every_source_pixel: bool


def exact_mode(plan: Plan, unit: Unit) -> UnitResult:
    """(Weighted) block mode straight from the source rows: no warping, GDAL's tie rule.

    The window is read and reduced a few rows at a time (about ``CHUNK_BYTES``, whole source
    blocks: a tiled source's blocks are decoded once), so the kernel finds them still in cache.
    A small mask is reduced in NumPy (:mod:`geotiler.rescale.smallmode`): loading numba would
    cost more than the work.
    """
    factor = plan.factor or 1
    rows, cols = plan.source_shape
    left = plan.col_off + unit.col_start * factor
    c0, c1 = max(left, 0), min(plan.col_off + unit.col_stop * factor, cols)
    out = np.empty((unit.row_stop - unit.row_start, unit.col_stop - unit.col_start), plan.dtype)
    hist = np.zeros(plan.n_values, np.int64)
    row_bytes = factor * max(c1 - c0, 1) * np.dtype(plan.dtype).itemsize
    whole_blocks = math.lcm(plan.block_rows, factor) // factor  # output rows per block row
    step = -(-max(1, CHUNK_BYTES // row_bytes) // whole_blocks) * whole_blocks
    kernels = None if rows * cols <= SMALL_PX else _Kernels(factor)
    buffers = _pool(plan.token)
    src = buffers.take(min(step, len(out)) * factor, c1 - c0, plan.dtype)
    try:
        with open_raster(plan.source) as dataset, RawStrips.open(dataset) as raw:
            for i in range(0, len(out), step):
                top = plan.row_off + (unit.row_start + i) * factor
                r0 = max(top, 0)
                stop = unit.row_start + min(i + step, len(out))
                r1 = min(plan.row_off + stop * factor, rows)
                band = src[: max(r1 - r0, 0)]
                if len(band) and not (raw is not None and raw.read(r0, c0, band)):
                    dataset.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), out=band)
                args = (plan.nodata, plan.has_nodata, plan.weights, out[i : i + step], hist)
                if kernels is None and numpy_mode(band, top - r0, left - c0, factor, *args):
                    continue
                kernels = kernels or _Kernels(factor)
                kernels(band, top - r0, left - c0, *args)
    finally:
        buffers.give(src)
    return UnitResult(unit, out, hist)


class _Kernels:
    """The numba kernels for one factor: the packed one while it can, then the general one."""

    def __init__(self, factor: int) -> None:
        from geotiler.rescale.kernels import (  # numba: lazily
            PACKED_MAX_FACTOR,
            mode_kernel,
            packed_mode_kernel,
        )

        self.factor = factor
        self.general = mode_kernel
        self.packed = packed_mode_kernel(factor) if factor <= PACKED_MAX_FACTOR else None

    def __call__(self, band: np.ndarray, row0: int, col0: int, *args: Any) -> None:
        if self.packed is None or not self.packed(band, row0, col0, *args):
            self.packed = None  # a 17th value: the general kernel from here on
            self.general(band, row0, col0, self.factor, *args)


def counts_fast(plan: Plan) -> bool:
    """Whether a run's histograms are counted by numba's kernel rather than ``np.bincount``.

    ``np.bincount`` widens every uint8 to 8 bytes first (~10 ns a pixel here, two pixels at a
    time ~5 ns: most of ``near``'s time at full size); the kernel takes ~1.5 ns, once numba is
    loaded (~1 s of CPU in a fresh process). So: when ``mode`` loads numba anyway, or a run
    counts ``FAST_COUNT_PX`` or more (the output's pixels, plus for ``near`` every
    :func:`hist_every`-th sampled source row).
    """
    if not plan.n_values:
        return False
    rows, cols = plan.source_shape
    factor = plan.factor or 1
    if plan.factor is not None and plan.method != "near" and rows * cols > SMALL_PX:
        return True  # the mode kernels load numba
    counted = plan.target.rows * plan.target.cols
    if plan.method == "near":
        counted += rows * cols // (factor * hist_every(plan))
    return counted >= FAST_COUNT_PX


def hist_every(plan: Plan) -> int:
    """``near`` counts every n-th sampled row in full: at most ``HIST_SAMPLE_PX`` or so in all.

    Every 8th row would be 1.1 Gpx of the full 300000² mask (~10 s of counting, more than its
    reads); rows spread evenly over the mask give the class shares as well.
    """
    rows, cols = plan.source_shape
    sampled = rows // (plan.factor or 1) * cols
    return max(HIST_EVERY, -(-sampled // HIST_SAMPLE_PX))


def count_into(values: np.ndarray, hist: np.ndarray, *, fast: bool) -> None:
    """Add the counts of ``values``' pixels to ``hist`` (one counter per value of the dtype).

    ``fast``: numba's kernel. Else a large uint8 array is counted two pixels at a time (its
    bytes read as uint16, 65536 counters folded to 256): half the widening, ~2x faster.
    """
    if fast and values.size >= 4096:
        from geotiler.rescale.kernels import count_values  # numba: lazily

        count_values(values.reshape(-1, values.shape[-1]) if values.ndim != 2 else values, hist)
        return
    if values.dtype == np.uint8 and hist.shape[0] == 256 and values.size >= PAIRS_FROM_PX:
        flat = np.ascontiguousarray(values).reshape(-1)
        even = flat.size - flat.size % 2
        pairs = np.bincount(flat[:even].view(np.uint16), minlength=1 << 16).reshape(256, 256)
        hist += pairs.sum(0) + pairs.sum(1)
        if even < flat.size:
            hist[flat[-1]] += 1
        return
    hist += np.bincount(values.ravel(), minlength=hist.shape[0])


def exact_near(plan: Plan, unit: Unit) -> UnitResult:
    """Nearest neighbour on the exact grid: source pixel ``floor((i + 0.5) * f)`` of each block.

    An uncompressed strip file is read directly, each sampled row's span once
    (:mod:`geotiler.rescale.rawstrips`). Otherwise, where the blocks lie inside the source, GDAL's
    decimating read takes exactly those pixels and reads only the rows they are on; rows of
    partial edge blocks are read one at a time. The source histogram counts every
    :func:`hist_every`-th sampled row in full.
    """
    factor = plan.factor or 1
    rows, cols = plan.source_shape
    src_rows = plan.row_off + (2 * np.arange(unit.row_start, unit.row_stop) + 1) * factor // 2
    src_cols = plan.col_off + (2 * np.arange(unit.col_start, unit.col_stop) + 1) * factor // 2
    row_ok = np.flatnonzero((src_rows >= 0) & (src_rows < rows))
    col_ok = np.flatnonzero((src_cols >= 0) & (src_cols < cols))
    out = np.full((len(src_rows), len(src_cols)), plan.nodata, plan.dtype)
    hist = np.zeros(plan.n_values, np.int64) if plan.n_values else None
    if len(row_ok) == 0 or len(col_ok) == 0:
        return UnitResult(unit, out, hist)
    half = factor // 2
    inside_rows = np.flatnonzero((src_rows - half >= 0) & (src_rows - half + factor <= rows))
    inside_cols = (src_cols - half >= 0) & (src_cols - half + factor <= cols)
    c0, c1 = int(src_cols[col_ok[0]]), int(src_cols[col_ok[-1]]) + 1
    by_row = set(row_ok.tolist())
    fast, every = counts_fast(plan), hist_every(plan)
    with open_raster(plan.source) as dataset, RawStrips.open(dataset) as raw:
        out_cols = slice(int(col_ok[0]), int(col_ok[-1]) + 1)
        if raw is not None and _near_direct(
            raw, src_rows[row_ok], c0, c1, factor, out, row_ok, out_cols, hist, fast, every
        ):
            return UnitResult(unit, out, hist)
        if inside_cols[col_ok].all() and len(inside_rows):
            a, b = int(inside_rows[0]), int(inside_rows[-1]) + 1
            ca, cb = int(col_ok[0]), int(col_ok[-1]) + 1
            top, left = int(src_rows[a]) - half, int(src_cols[ca]) - half
            window = Window(left, top, (cb - ca) * factor, (b - a) * factor)
            out[a:b, ca:cb] = dataset.read(1, window=window, out_shape=(b - a, cb - ca))
            by_row -= set(range(a, b))
        line = np.empty((1, c1 - c0), plan.dtype)
        picked = src_cols[col_ok] - c0
        counted = set(row_ok[::every].tolist()) if hist is not None else set()
        for k in sorted(by_row | counted):
            dataset.read(1, window=Window(c0, int(src_rows[k]), c1 - c0, 1), out=line)
            if k in by_row:
                out[k, col_ok] = line[0, picked]
            if k in counted and hist is not None:
                count_into(line, hist, fast=fast)
    return UnitResult(unit, out, hist)


def _near_direct(
    raw: RawStrips,
    src_rows: np.ndarray,
    c0: int,
    c1: int,
    factor: int,
    out: np.ndarray,
    out_rows: np.ndarray,
    out_cols: slice,
    hist: np.ndarray | None,
    fast: bool,
    every: int,
) -> bool:
    """``near`` by reading each sampled row's span once, straight from the file."""
    line = np.empty((1, c1 - c0), out.dtype)
    counted = np.zeros_like(hist) if hist is not None else None
    for n, (row, k) in enumerate(zip(src_rows.tolist(), out_rows.tolist(), strict=True)):
        if not raw.read(row, c0, line):
            return False
        out[k, out_cols] = line[0, ::factor]  # column c0 is the first sampled one
        if n % every == 0 and counted is not None:
            count_into(line, counted, fast=fast)
    if hist is not None and counted is not None:
        hist += counted
    return True


def warp_unit(plan: Plan, unit: Unit, resampling: Resampling) -> UnitResult:
    """One output window through GDAL's warper (any CRS, any resolution ratio)."""
    window = unit.window
    out = np.full((int(window.height), int(window.width)), plan.nodata, plan.dtype)
    with open_raster(plan.source) as dataset:
        reproject(
            source=rasterio.band(dataset, 1),
            destination=out,
            dst_transform=plan.target.crop(window).transform,
            dst_crs=plan.target.crs,
            dst_nodata=plan.nodata,
            src_nodata=plan.nodata if plan.has_nodata else None,
            resampling=resampling,
            num_threads=1,
            init_dest_nodata=True,
        )
    return UnitResult(unit, out, None)


METHODS: dict[str, MethodSpec] = {
    "near": MethodSpec(exact_near, Resampling.nearest, False, False),
    "mode": MethodSpec(exact_mode, Resampling.mode, True, True),
    "weighted-mode": MethodSpec(exact_mode, None, True, True),
}
"""Resampling methods by name; adding one is a function plus one line here."""


def compute_unit(plan: Plan, unit: Unit) -> UnitResult:
    """The exact path when the plan has a factor, else GDAL's warper."""
    spec = METHODS[plan.method]
    if plan.factor is not None:
        return spec.exact(plan, unit)
    if spec.resampling is None:  # refused earlier by the planner; kept as a guard
        raise ValueError(f"method {plan.method!r} has no warp path")
    return warp_unit(plan, unit, spec.resampling)


class _Buffers:
    """Reusable read buffers of one run: re-reading into warm memory skips page faults."""

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, rows: int, cols: int, dtype: str) -> np.ndarray:
        size = rows * cols * np.dtype(dtype).itemsize
        with self._lock:
            for k, buffer in enumerate(self._free):
                if buffer.nbytes >= size:
                    flat = self._free.pop(k)
                    break
            else:
                flat = np.empty(size, np.uint8)
        return flat[:size].view(dtype).reshape(rows, cols)

    def give(self, array: np.ndarray) -> None:
        flat = array.base if array.base is not None else array
        while flat.base is not None:
            flat = flat.base
        with self._lock:
            self._free.append(flat)


_POOLS: dict[str, _Buffers] = {}
_POOLS_LOCK = threading.Lock()
_POOLS_KEPT = 2


def _pool(token: str) -> _Buffers:
    with _POOLS_LOCK:
        if token not in _POOLS:
            while len(_POOLS) >= _POOLS_KEPT:  # a worker that never sees release_buffers
                _POOLS.pop(next(iter(_POOLS)))
            _POOLS[token] = _Buffers()
        return _POOLS[token]


def release_buffers(token: str) -> None:
    """Free the read buffers of a finished run (in this process)."""
    with _POOLS_LOCK:
        _POOLS.pop(token, None)
