"""Rescale a class mask onto another grid (e.g. a 1 m mask onto a 10 m scene), out of core.

:func:`rescale` plans output windows aligned to the source's block layout (full-width row bands
for a strip-organised source, tile-aligned windows for a tiled one), computes them in parallel
(local threads, or with Dask on a dask.distributed cluster or in processes: the same windows,
byte-identical output) and writes them from one writer, in order, as they arrive. Dask is
imported only for a cluster or processes (its import costs a small rescale a sixth of its time).
Memory is bounded by ``memory_mb``, not by the size of the source. How a window is computed is
in :mod:`geotiler.rescale.methods`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.shutil
from pydantic import Field, field_validator, model_validator

from geotiler.catalog import ClassTable
from geotiler.config import StageSettings
from geotiler.creation_options import (
    check_creation_options,
    normalise_creation_options,
    with_creation_options,
)
from geotiler.errors import InputError
from geotiler.grid import Grid
from geotiler.io import (
    atomic_output,
    block_layout,
    check_output,
    geotiff_profile,
    open_raster,
    read_class_table,
    write_class_metadata,
)
from geotiler.rescale.methods import (
    METHODS,
    Plan,
    release_buffers,
)
from geotiler.rescale.plan import dst_nodata as dst_nodata_value
from geotiler.rescale.plan import make_plan, plan_units
from geotiler.rescale.writing import Progress, executor, write_units

log = logging.getLogger(__name__)

Method = Literal["near", "mode", "weighted-mode"]
MIB = 1 << 20
SAMPLE_PX = 4_000_000
FAST_LEVELS: dict[str, dict[str, int]] = {"deflate": {"zlevel": 1}, "zstd": {"zstd_level": 1}}


class RescaleSettings(StageSettings):
    """Settings of the ``rescale`` stage (pipeline section ``rescale``)."""

    method: Method = "mode"
    factor: int | None = Field(default=None, ge=1, description="target = source zoomed out N x")
    resolution: float | None = Field(default=None, gt=0, description="target pixel size")
    class_weights: dict[int | str, float] = Field(
        default_factory=dict, description="weighted-mode: class id or name -> weight (> 0)"
    )
    memory_mb: int = Field(default=256, ge=16, description="bound on source pixels in flight")
    workers: int | None = Field(default=None, ge=1, description="threads (default: all CPUs)")
    scheduler: str | None = None
    cog: bool = False
    compress: Literal["zstd", "deflate", "lzw", "none"] = "zstd"
    block_px: int = Field(default=512, ge=16, multiple_of=16)
    gdal_cache_mb: int = Field(default=64, ge=8)
    creation_options: dict[str, str] = Field(default_factory=dict, description="GDAL's (--co)")
    src_nodata: float | None = Field(default=None, description="the mask's nodata, overridden")
    dst_nodata: float | None = Field(default=None, description="the output's nodata value")

    _gdal_names = field_validator("creation_options", mode="before")(normalise_creation_options)

    @model_validator(mode="after")
    def _one_target(self) -> RescaleSettings:
        if self.factor is not None and self.resolution is not None:
            raise ValueError("give factor or resolution, not both")
        return self


@dataclass(frozen=True)
class RescaleResult:
    """What a rescale wrote and measured."""

    path: Path
    source: Path
    target: Grid
    method: str
    factor: int | None
    source_px: int
    seconds: float
    nodata: int
    source_counts: dict[int, int]
    output_counts: dict[int, int]
    source_sampled: bool
    classes: ClassTable | None
    notices: tuple[str, ...] = field(default=())

    @property
    def mpx_per_s(self) -> float:
        return self.source_px / max(self.seconds, 1e-9) / 1e6

    def shares(self) -> list[tuple[int, float, float]]:
        """``(value, source share, output share)`` of every class value, nodata left out."""
        values = sorted((set(self.source_counts) | set(self.output_counts)) - {self.nodata})
        src_total = sum(self.source_counts.get(v, 0) for v in values) or 1
        out_total = sum(self.output_counts.get(v, 0) for v in values) or 1
        return [
            (v, self.source_counts.get(v, 0) / src_total, self.output_counts.get(v, 0) / out_total)
            for v in values
        ]


def target_grid(
    source: Grid,
    *,
    like: str | os.PathLike[str] | None = None,
    factor: int | None = None,
    resolution: float | None = None,
) -> Grid:
    """The target grid: another raster's, the source zoomed out ``factor`` x, or a pixel size."""
    choices = {"like": like, "factor": factor, "resolution": resolution}
    given = [name for name, value in choices.items() if value is not None]
    if len(given) != 1:
        raise InputError(f"give exactly one of like, factor, resolution (got {given or 'none'})")
    if like is not None:
        return Grid.from_raster(like)
    if factor is not None:
        return source.zoom_out(factor)
    return Grid.from_bounds(source.bounds, float(resolution or 0), source.crs)


def rescale(
    source: str | os.PathLike[str],
    target: Grid,
    out: str | os.PathLike[str],
    *,
    method: Method = "mode",
    weights: Mapping[int, float] | None = None,
    classes: ClassTable | None = None,
    memory_mb: int = 256,
    workers: int | None = None,
    scheduler: str | None = None,
    cog: bool = False,
    compress: str = "zstd",
    block_px: int = 512,
    gdal_cache_mb: int = 64,
    creation_options: Mapping[str, str] | None = None,
    src_nodata: float | None = None,
    dst_nodata: float | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> RescaleResult:
    """Resample the class raster ``source`` onto ``target`` and write it to ``out``.

    Args:
        source: single-band class raster (the mask).
        target: the output grid; where the source does not cover it the output is nodata.
        out: output GeoTIFF (COG with ``cog``); refused if it exists unless ``overwrite``.
        method: ``near``, ``mode`` or ``weighted-mode`` (see
            :data:`geotiler.rescale.methods.METHODS`).
        weights: weighted-mode: weight per class value (others weigh 1).
        classes: class table for colours and names when the source carries none.
        memory_mb: bound on the source pixels held at once (sets the window size).
        workers: local threads (default: all CPUs).
        scheduler: ``threads``, ``synchronous`` or ``tcp://host:port`` of a Dask cluster.
        cog: write a Cloud Optimized GeoTIFF with class-preserving overviews.
        compress: output compression, at a fast level (ZSTD level 1 is ~8x faster than
            DEFLATE's default on class maps, and as small).
        block_px: output tile size.
        gdal_cache_mb: GDAL block cache while running (small is faster for one-pass reads).
        creation_options: GDAL creation options over geotiler's (the COG driver's with ``cog``).
        src_nodata: the mask's nodata value, overriding the file's and the class table's.
        dst_nodata: the output's nodata value (default: the source's); not a class's value.
        overwrite: replace an existing ``out``.
        progress: called with the number of source rows done since the last call (all the
            mask's rows in total).
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    check_output(out, overwrite=overwrite, kind="geotiff", inputs=[source])
    started = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb):
        with open_raster(source) as dataset:
            if Path(out).resolve() == Path(dataset.name).resolve():
                raise InputError(f"{out}: the output would replace the source; choose another -o")
            plan, notices = make_plan(dataset, target, method, weights or {}, classes, src_nodata)
            table = read_class_table(dataset) or classes
            colormap = _colormap(dataset) if table is None else None
            layout = block_layout(dataset)
        out_nodata = dst_nodata_value(plan, dst_nodata, table, str(source))
        if out_nodata is not None and table is not None:
            table = table.model_copy(update={"nodata": out_nodata})
        written_nodata = plan.nodata if out_nodata is None else out_nodata
        profile = writing_profile(plan.dtype, written_nodata, compress=compress, block_px=block_px)
        check_creation_options(creation_options, profile, cog=cog, output=out)
        if not cog:  # with cog the options go to the COG copy
            profile = with_creation_options(profile, creation_options)
        for notice in notices:
            log.warning(notice)
        with executor(scheduler, workers) as (compute, threads):
            schedule = plan_units(plan, layout, memory_mb * MIB // (2 * threads), threads)
            with atomic_output(out, overwrite=overwrite, kind="geotiff", inputs=[source]) as tmp:
                try:
                    src_hist, out_hist = write_units(
                        tmp, plan, profile, schedule, threads, compute, progress, out_nodata
                    )
                finally:
                    release_buffers(plan.token)
                cog_options = creation_options if cog else None
                _finish(
                    tmp, table, colormap, cog_options, cog=cog, method=method, compress=compress
                )
        if plan.factor is None and plan.n_values:
            src_hist = _sample_histogram(plan)
    return RescaleResult(
        path=Path(out),
        source=Path(source),
        target=target,
        method=method,
        factor=plan.factor,
        source_px=schedule.source_px,
        seconds=time.perf_counter() - started,
        nodata=int(plan.nodata) if plan.n_values else 0,
        source_counts=_nonzero(src_hist),
        output_counts=_nonzero(out_hist),
        source_sampled=plan.factor is None or not METHODS[method].counts_every_source_pixel,
        classes=table,
        notices=tuple(notices),
    )


def writing_profile(
    dtype: str, nodata: float | None, *, compress: str, block_px: int
) -> dict[str, Any]:
    """geotiler's GeoTIFF profile of a rescaled mask (before the user's creation options)."""
    profile = geotiff_profile(dtype=dtype, nodata=nodata, block_px=block_px, compress=compress)
    profile.update(FAST_LEVELS.get(compress, {}))
    return profile


def _finish(
    path: Path,
    table: ClassTable | None,
    colormap: dict[int, tuple[int, ...]] | None,
    cog_options: Mapping[str, str] | None,
    *,
    cog: bool,
    method: str,
    compress: str,
) -> None:
    """Class metadata onto the written file, then (optionally) its COG copy in its place."""
    if table is not None:
        write_class_metadata(path, table)
    elif colormap:
        with rasterio.open(path, "r+") as dataset:
            dataset.write_colormap(1, colormap)
    if not cog:
        return
    staged = path.with_name(path.stem + ".staged.tif")
    os.replace(path, staged)
    sidecar = path.with_name(path.name + ".aux.xml")
    if sidecar.exists():
        os.replace(sidecar, staged.with_name(staged.name + ".aux.xml"))
    try:
        defaults = {
            "compress": compress.upper(),
            **({"level": 1} if compress in FAST_LEVELS else {}),
            "overview_resampling": "NEAREST" if method == "near" else "MODE",
            "bigtiff": "IF_SAFER",
            "num_threads": "ALL_CPUS",
        }
        options = with_creation_options(defaults, cog_options)
        rasterio.shutil.copy(staged, path, driver="COG", **options)
    finally:
        rasterio.shutil.delete(staged)


def _colormap(dataset: Any) -> dict[int, tuple[int, ...]] | None:
    try:
        return dict(dataset.colormap(1))
    except ValueError:
        return None


def _sample_histogram(plan: Plan) -> np.ndarray:
    """A decimated read of the whole source (the warp path reads it through GDAL, uncounted)."""
    rows, cols = plan.source_shape
    step = max(1, math.ceil(math.sqrt(rows * cols / SAMPLE_PX)))
    with open_raster(plan.source) as dataset:
        data = dataset.read(1, out_shape=(max(1, rows // step), max(1, cols // step)))
    return np.bincount(data.ravel(), minlength=plan.n_values)


def _nonzero(hist: np.ndarray) -> dict[int, int]:
    return {int(v): int(hist[v]) for v in np.flatnonzero(hist)}


def resolve_class_weights(
    given: Mapping[int | str, float], method: str, table: ClassTable | None
) -> dict[int, float] | None:
    """``weighted-mode`` weights: the class table's, overridden by ``given`` (ids or names)."""
    if method != "weighted-mode":
        return None
    weights = dict(table.weights) if table is not None else {}
    for key, weight in given.items():
        if table is not None:
            weights[table.resolve(key)] = weight
        elif str(key).isdigit():
            weights[int(key)] = weight
        else:
            raise InputError(
                f"class weight {key}={weight:g}: class names need a class table; use the id"
            )
    return weights


def rescale_with_settings(
    source: str | os.PathLike[str],
    target: Grid,
    out: str | os.PathLike[str],
    settings: RescaleSettings,
    *,
    classes: ClassTable | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> RescaleResult:
    """:func:`rescale` driven by resolved settings (what the CLI and the pipeline use)."""
    return rescale(
        source,
        target,
        out,
        method=settings.method,
        weights=resolve_class_weights(settings.class_weights, settings.method, classes),
        classes=classes,
        memory_mb=settings.memory_mb,
        workers=settings.workers,
        scheduler=settings.scheduler,
        cog=settings.cog,
        compress=settings.compress,
        block_px=settings.block_px,
        gdal_cache_mb=settings.gdal_cache_mb,
        creation_options=settings.creation_options,
        src_nodata=settings.src_nodata,
        dst_nodata=settings.dst_nodata,
        overwrite=overwrite,
        progress=progress,
    )
