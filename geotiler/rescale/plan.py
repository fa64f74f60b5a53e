"""Planning a rescale: checking the inputs, choosing the exact or the warp path, and the windows.

:func:`make_plan` checks the mask against the method and the target grid and decides whether the
exact block path applies (the mask is an integer-factor refinement of the target).
:func:`plan_units` cuts the output into windows aligned to the source's block layout: full-width
row bands for a strip-organised source, tile-aligned windows for a tiled one, each holding about
``unit_bytes`` of source pixels, so memory depends on settings and not on the size of the mask.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.warp import transform_bounds

from geotiler.catalog import ClassTable
from geotiler.errors import GridMismatchError, InputError
from geotiler.grid import Grid, crs_name
from geotiler.io import BlockLayout, open_raster
from geotiler.rescale.methods import METHODS, Plan, Unit

HISTOGRAM_DTYPES = {"uint8": 256, "uint16": 65536}


@dataclass(frozen=True)
class Schedule:
    """The output windows of a run, in write order, and the source rows each one completes."""

    units: tuple[Unit, ...]
    advances: tuple[int, ...]
    source_rows: int
    source_px: int


def make_plan(
    dataset: Any,
    target: Grid,
    method: str,
    weights: Mapping[int, float],
    classes: ClassTable | None,
    src_nodata: float | None = None,
) -> tuple[Plan, list[str]]:
    """Check the source against the method and target; choose the exact path when possible.

    ``src_nodata`` (``--src-nodata``) overrides the mask's nodata value (and the class table's).
    """
    name = dataset.name
    spec = METHODS[method]
    if dataset.count != 1:
        raise InputError(
            f"{name}: rescaling needs a single-band class raster, got {dataset.count} bands"
        )
    dtype = dataset.dtypes[0]
    if spec.needs_integer and not np.issubdtype(np.dtype(dtype), np.integer):
        raise InputError(
            f"{name}: {method} needs integer class labels, got {dtype} pixels; "
            "use --method near or convert the mask to integers"
        )
    grid = Grid.from_dataset(dataset)
    notices: list[str] = []
    factor = grid.refinement_factor(target)
    n_values = HISTOGRAM_DTYPES.get(dtype, 0)
    if factor is not None and spec.needs_integer and not n_values:
        factor = None  # the block kernel counts uint8/uint16 values; GDAL handles the rest
        notices.append(f"{name}: {dtype} classes go through GDAL's warper (exact path: uint8/16)")
    elif not grid.same_crs(target):
        notices.append(
            f"{name}: the mask's CRS ({crs_name(grid.crs)}) differs from the target's "
            f"({crs_name(target.crs)}): resampling through GDAL's warper "
            "(slower, not block-exact)"
        )
    elif factor is None:
        notices.append(
            f"{name}: the target grid is not an integer-factor coarsening of the mask "
            "(pixel sizes or edges differ): resampling through GDAL's warper"
        )
    if factor is None and spec.resampling is None:
        raise InputError(
            f"{name}: {method} needs a uint8/uint16 mask and a target grid that is an "
            "integer-factor coarsening of it (same CRS, aligned pixel edges); "
            "use --method mode or --factor"
        )
    _check_overlap(grid, target, name)
    nodata, has_nodata = _nodata(dataset, classes, src_nodata)
    if not has_nodata and not _covers(grid, target):
        notices.append(f"{name}: no nodata value; target pixels the mask misses get {nodata}")
    col, row = ~grid.transform @ (target.transform.c, target.transform.f)
    row_off, col_off = round(row), round(col)
    plan = Plan(
        source=name,
        source_shape=grid.shape,
        dtype=dtype,
        target=target,
        method=method,
        factor=factor,
        row_off=row_off,
        col_off=col_off,
        nodata=nodata,
        has_nodata=has_nodata,
        n_values=n_values,
        weights=_weights(weights, n_values, name),
        token=uuid.uuid4().hex,
        block_rows=int(dataset.block_shapes[0][0]),
    )
    return plan, notices


def _check_overlap(grid: Grid, target: Grid, name: str) -> None:
    left, bottom, right, top = target.bounds
    if grid.crs is None or target.crs is None:
        if not grid.same_crs(target):
            raise GridMismatchError(
                f"{name}: one of the mask and the target grid has no CRS; georeference both "
                "or neither"
            )
    elif not grid.same_crs(target):
        left, bottom, right, top = transform_bounds(target.crs, grid.crs, left, bottom, right, top)
    s_left, s_bottom, s_right, s_top = grid.bounds
    if min(right, s_right) <= max(left, s_left) or min(top, s_top) <= max(bottom, s_bottom):
        raise GridMismatchError(
            f"{name}: the mask does not overlap the target grid (mask bounds "
            f"{_fmt(grid.bounds)}, target bounds {_fmt(target.bounds)} in "
            f"{crs_name(target.crs)}); check the target raster or its CRS"
        )


def _covers(grid: Grid, target: Grid) -> bool:
    if not grid.same_crs(target):
        return False
    (left, bottom, right, top), outer = target.bounds, grid.bounds
    return outer[0] <= left and outer[1] <= bottom and right <= outer[2] and top <= outer[3]


def _nodata(dataset: Any, classes: ClassTable | None, given: float | None) -> tuple[Any, bool]:
    if given is not None:
        return _fits(given, dataset.dtypes[0], f"{dataset.name}: --src-nodata"), True
    if dataset.nodata is not None:
        value = dataset.nodata
        return (int(value) if float(value).is_integer() else value), True
    if classes is not None and classes.nodata is not None:
        return classes.nodata, True
    dtype = np.dtype(dataset.dtypes[0])
    fill = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else float("nan")
    return fill, False


def _fits(value: float, dtype: str, what: str) -> Any:
    """``value`` as a pixel of ``dtype`` (an int for integer rasters); InputError if it can't be."""
    kind = np.dtype(dtype)
    if np.issubdtype(kind, np.integer):
        info = np.iinfo(kind)
        if not float(value).is_integer() or not info.min <= value <= info.max:
            raise InputError(
                f"{what} {value:g}: the mask is {dtype}; choose an integer in "
                f"{info.min}..{info.max}"
            )
        return int(value)
    return float(value)


def dst_nodata(plan: Plan, value: float | None, classes: ClassTable | None, name: str) -> Any:
    """The output's nodata value for ``--dst-nodata`` (None: the source's, unchanged).

    Raises:
        InputError: a value the output dtype cannot hold, or a class of the class table.
    """
    if value is None:
        return None
    fitted = _fits(value, plan.dtype, f"{name}: --dst-nodata")
    if classes is not None and fitted in classes.names:
        raise InputError(
            f"{name}: --dst-nodata {fitted} is the class {classes.names[fitted]!r}; choose a "
            "value no class uses"
        )
    return None if fitted == plan.nodata else fitted


def _weights(weights: Mapping[int, float], n_values: int, name: str) -> np.ndarray:
    array = np.ones(n_values, np.float64)
    for value, weight in weights.items():
        if not 0 <= value < n_values or not weight > 0:
            raise InputError(
                f"{name}: bad class weight {value}={weight}: ids must be pixel values of the "
                f"mask (0..{n_values - 1}) and weights positive"
            )
        array[value] = weight
    return array


def plan_units(plan: Plan, layout: BlockLayout, unit_bytes: int, threads: int) -> Schedule:
    """Output windows of about ``unit_bytes`` of source, aligned to the source's blocks."""
    if plan.factor is None:
        return _warp_units(plan, unit_bytes, threads)
    f = plan.factor
    rows, cols = plan.source_shape
    i_lo, i_hi = max(0, -plan.row_off // f), min(plan.target.rows, -((plan.row_off - rows) // f))
    j_lo, j_hi = max(0, -plan.col_off // f), min(plan.target.cols, -((plan.col_off - cols) // f))
    itemsize = np.dtype(plan.dtype).itemsize
    src_cols = min(cols, plan.col_off + j_hi * f) - max(0, plan.col_off + j_lo * f)
    enough = 4 * threads  # windows wanted at least, to keep every thread busy
    if layout.striped:
        per_row = src_cols * itemsize * (1 if plan.method == "near" else f)
        by_memory = max(1, unit_bytes // per_row)
        step_rows = _divisor_step(min(by_memory, -(-(i_hi - i_lo) // enough)))
        step_cols = j_hi - j_lo
    else:
        side = int(math.sqrt(unit_bytes / itemsize)) // f
        align_rows = math.lcm(f, layout.block_rows) // f
        align_cols = math.lcm(f, layout.block_cols) // f
        step_rows, step_cols = _multiple(side, align_rows), _multiple(side, align_cols)
        while _count(i_hi - i_lo, step_rows) * _count(j_hi - j_lo, step_cols) < enough:
            if step_rows > align_rows and step_rows >= step_cols:
                step_rows = _multiple(step_rows // 2, align_rows)
            elif step_cols > align_cols:
                step_cols = _multiple(step_cols // 2, align_cols)
            else:
                break
    units, advances = [], []
    for i0 in range(i_lo, i_hi, step_rows):
        i1 = min(i0 + step_rows, i_hi)
        done = min(rows, plan.row_off + i1 * f) - max(0, plan.row_off + i0 * f)
        for j0 in range(j_lo, j_hi, step_cols):
            j1 = min(j0 + step_cols, j_hi)
            units.append(Unit(i0, i1, j0, j1))
            advances.append(done if j1 == j_hi else 0)
    source_rows = sum(advances)
    return Schedule(tuple(units), tuple(advances), source_rows, source_rows * src_cols)


def _warp_units(plan: Plan, unit_bytes: int, threads: int) -> Schedule:
    target, (rows, cols) = plan.target, plan.source_shape
    with open_raster(plan.source) as dataset:
        grid = Grid.from_dataset(dataset)
    footprint = transform_bounds(grid.crs, target.crs, *grid.bounds)
    window = target.window_of(footprint)
    i_lo, i_hi = max(0, int(window.row_off)), min(target.rows, int(window.row_off + window.height))
    j_lo, j_hi = max(0, int(window.col_off)), min(target.cols, int(window.col_off + window.width))
    src_per_out_row = max(1.0, rows / max(i_hi - i_lo, 1))
    per_row = src_per_out_row * cols * np.dtype(plan.dtype).itemsize
    step = _divisor_step(int(unit_bytes // per_row))
    step = max(1, min(step, -(-(i_hi - i_lo) // (4 * threads))))
    units = [Unit(i0, min(i0 + step, i_hi), j_lo, j_hi) for i0 in range(i_lo, i_hi, step)]
    marks = [round(rows * (u.row_stop - i_lo) / (i_hi - i_lo)) for u in units]
    advances = [b - a for a, b in zip([0, *marks[:-1]], marks, strict=True)]
    return Schedule(tuple(units), tuple(advances), rows, rows * cols)


def _divisor_step(rows: int, block: int = 512) -> int:
    # Bands that tile the output's 512-row blocks exactly keep the writer's buffer small.
    if rows >= block:
        return rows - rows % block
    return max(d for d in range(1, max(rows, 1) + 1) if block % d == 0)


def _multiple(value: int, step: int) -> int:
    return max(step, value - value % step)


def _count(size: int, step: int) -> int:
    return -(-size // step)


def _fmt(bounds: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"
