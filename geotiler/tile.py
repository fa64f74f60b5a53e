"""The tile stage: scenes and a mask on one grid into a Zarr tile store, and re-deciding a store.

:func:`make_tiles` checks the inputs, streams the scenes in bands of tile rows (Dask tasks read
column groups in parallel while the main thread writes the previous band's shards), then filters,
splits and balances the tiles from their index and marks the store complete. An interrupted run
resumes when re-run with the same inputs. :func:`refilter` re-decides a store from its index.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pydantic import Field, field_validator, model_validator

from geotiler import __version__
from geotiler.balance import parse_balance
from geotiler.catalog import ClassTable
from geotiler.config import StageSettings
from geotiler.decisions import DecisionSettings, decide
from geotiler.errors import GridMismatchError, InputError
from geotiler.filters import parse_filter
from geotiler.footprints import read_area, touching
from geotiler.grid import Grid
from geotiler.io import block_layout, open_raster, require_single_band_integer
from geotiler.limits import check_tile_memory
from geotiler.outputs import writes
from geotiler.parallel import use_scheduler
from geotiler.splits import SPLIT_NAMES, parse_split
from geotiler.store import StoreWriter, TileStore, load_index
from geotiler.tiling import (
    VISIBLE_BANDS,
    RowBuffer,
    Sources,
    TileArrays,
    TileBatch,
    TileLayout,
    cut_unit,
    plan_units,
    tile_rows_per_band,
)

log = logging.getLogger(__name__)
Progress = Callable[[int], None]
# Shard files of <= 64 MiB: zarr holds a shard about three times over while encoding it.
MAX_SHARD_BYTES = 64 * 2**20
UNIT_TILE_BYTES = 128 * 2**20
"""Tile pixels cut per unit; ``UNITS_AHEAD + 1`` units' worth are held at a time."""
UNITS_AHEAD = 2
PIECE_COLS = 2048


class TileSettings(StageSettings):
    """Settings of ``geotiler tile`` (pipeline section ``tile``)."""

    size: int = Field(default=300, ge=8, description="tile side in pixels")
    overlap: int = Field(default=0, ge=0, description="pixels shared by neighbouring tiles")
    filters: tuple[str, ...] = ()
    balance: str = "none"
    split: str = "block:0.8,0.1,0.1"
    split_aoi: dict[str, str] = Field(default_factory=dict, description="split -> vector file")
    seed: int = 0
    block_tiles: int | None = Field(default=None, ge=1, description="split block side, tiles")
    aoi: str | None = Field(default=None, description="tile only where these polygons are")
    nodata: int | None = Field(default=None, ge=0, le=255)
    classes: str | None = Field(default=None, description="class table name or file")
    scheduler: str | None = None
    workers: int | None = Field(default=None, ge=1)
    shard_tiles: int | None = Field(default=None, ge=1, description="tiles per shard file")
    band_memory_mb: int = Field(default=256, ge=16, description="tile data read per band")
    gdal_cache_mb: int = Field(
        default=64, ge=8, description="GDAL block cache (blocks are read once: small is enough)"
    )
    cloud_brightness: float = 3000.0
    cloud_whiteness: float = 0.2

    @model_validator(mode="after")
    def _check(self) -> TileSettings:
        if self.overlap >= self.size:
            raise ValueError(f"overlap {self.overlap} must be smaller than size {self.size}")
        for spec in self.filters:
            parse_filter(spec)
        parse_balance(self.balance)
        parse_split(self.split)
        return self

    @field_validator("split_aoi")
    @classmethod
    def _split_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name not in SPLIT_NAMES:
                raise ValueError(f"unknown split {name!r} (use {', '.join(SPLIT_NAMES)})")
        return value

    @property
    def stride(self) -> int:
        return self.size - self.overlap

    def decisions(self) -> DecisionSettings:
        return DecisionSettings(
            filters=tuple(parse_filter(f) for f in self.filters),
            balance=parse_balance(self.balance),
            split=parse_split(self.split),
            seed=self.seed,
            block_tiles=self.block_tiles,
            split_areas=tuple(sorted(self.split_aoi.items())),
        )


@dataclass(frozen=True)
class TileInputs:
    """Scenes (name -> file) on one grid, the mask on it, optional cloud masks and the classes."""

    scenes: dict[str, Path]
    mask: Path
    classes: ClassTable
    clouds: dict[str, Path] = field(default_factory=dict)
    bands: tuple[str, ...] = ()

    def files(self, settings: TileSettings | None = None) -> list[str | Path]:
        """Every file the tiling reads (an output must be none of them)."""
        areas = [settings.aoi, *settings.split_aoi.values()] if settings else []
        return [*self.scenes.values(), self.mask, *self.clouds.values(), *filter(None, areas)]


@dataclass(frozen=True)
class _Scenes:
    grid: Grid
    count: int
    dtype: str
    nodata: float | None
    block_rows: int
    block_cols: int
    bands: tuple[str, ...]


@writes("output", "store", keep=True, inputs=lambda a: a["inputs"].files(a["settings"]))
def make_tiles(
    inputs: TileInputs,
    output: str | PathLike[str],
    settings: TileSettings,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    command: str | None = None,
) -> TileStore:
    """Tile ``inputs`` into the store at ``output`` (resuming an unfinished one); see module doc.

    Raises:
        GridMismatchError: the scenes, the mask or a cloud mask are not on one grid.
        InputError: band counts or dtypes differ, or no tile is left after filtering.
    """
    scenes = _check_inputs(inputs)
    check_tile_memory(
        str(next(iter(inputs.scenes.values()))), rows=scenes.grid.rows, cols=scenes.grid.cols,
        bands=scenes.count, itemsize=np.dtype(scenes.dtype).itemsize, size_px=settings.size,
        units=UNITS_AHEAD + 1, unit_bytes=UNIT_TILE_BYTES, shard_bytes=MAX_SHARD_BYTES,
    )  # fmt: skip
    layout = TileLayout(scenes.grid, settings.size, settings.stride)
    active = _active_positions(layout, settings.aoi)
    sources = [_sources(inputs, name, scenes, settings) for name in inputs.scenes]
    tile_bytes = len(scenes.bands) * settings.size**2 * np.dtype(scenes.dtype).itemsize
    shard = settings.shard_tiles or int(
        np.clip(layout.shape[1], 8, max(8, MAX_SHARD_BYTES // tile_bytes))
    )
    meta = _meta(inputs, settings, scenes, shard, command)
    writer = StoreWriter.open(
        output, meta, capacity=int(active.sum()) * len(sources), overwrite=overwrite
    )
    if not writer.done:
        rows_per_band = tile_rows_per_band(
            layout,
            bands=scenes.count,
            itemsize=np.dtype(scenes.dtype).itemsize,
            block_rows=scenes.block_rows,
            budget_bytes=settings.band_memory_mb * 2**20,
        )
        max_tiles = max(1, UNIT_TILE_BYTES // tile_bytes)
        bands = plan_units(layout, active, tile_rows_per_band=rows_per_band, max_tiles=max_tiles)
        # Scene-major: each scene's rows stream once through one buffer.
        units = [(band, number) for number in range(len(sources)) for band in bands]
        reading = _Reading(sources, scenes, settings, rows_per_band)
        # GDAL's default cache (5% of RAM) would fill with blocks never read again.
        with (
            rasterio.Env(GDAL_CACHEMAX=settings.gdal_cache_mb),
            use_scheduler(settings.scheduler, workers=settings.workers),
        ):
            _stream(writer, units, reading, progress or _ignore)
    if writer.finish() == 0:
        raise InputError(
            f"{inputs.mask}: no tile has a valid pixel (labelled, with imagery); check the mask's "
            "nodata (--nodata) and the --aoi"
        )
    decisions = decide(load_index(output), inputs.classes, scenes.grid, settings.decisions())
    writer.complete(decisions.attrs, decisions.arrays)
    return TileStore.open(output)


def _ignore(_: int) -> None:
    return None


class _Reading:
    """Cuts units in order, through one :class:`RowBuffer` per scene (one scene at a time)."""

    def __init__(
        self, sources: list[Sources], scenes: _Scenes, settings: TileSettings, rows_per_band: int
    ) -> None:
        self.sources = sources
        self.size = settings.size
        self.shape = (scenes.count, scenes.grid.rows, scenes.grid.cols)
        self.dtype = np.dtype(scenes.dtype)
        self.block = (scenes.block_rows, scenes.block_cols)
        self.capacity = min(scenes.grid.rows, (rows_per_band - 1) * settings.stride + self.size)
        self.buffer: tuple[int, RowBuffer] | None = None
        # The writer stores unit n (and copies its leftovers) while the next ones are cut.
        self.arrays = tuple(TileArrays() for _ in range(UNITS_AHEAD + 1))
        self.cuts = 0

    def cut(self, tiles: np.ndarray, number: int) -> TileBatch:
        if self.buffer is None or self.buffer[0] != number:
            self.buffer = None  # free the previous scene's rows first
            rows = RowBuffer(
                self.sources[number],
                shape=self.shape,
                dtype=self.dtype,
                block=self.block,
                capacity=self.capacity,
                piece_cols=PIECE_COLS,
            )
            self.buffer = (number, rows)
        self.cuts += 1
        arrays = self.arrays[self.cuts % len(self.arrays)]
        return cut_unit(self.sources[number], self.buffer[1], tiles, self.size, arrays)


def _stream(
    writer: StoreWriter,
    units: list[tuple[np.ndarray, int]],
    reading: _Reading,
    progress: Progress,
) -> None:
    """Cut the units in order, ``UNITS_AHEAD`` ahead of the writer; skip those already written.

    Working ahead keeps the writer busy while a unit that starts a new band of rows is read.
    """
    start = writer.resume_unit
    progress(sum(len(tiles) for tiles, _ in units[:start]))
    with _single_worker() as pool:
        ahead = deque(
            pool.submit(reading.cut, *unit) for unit in units[start : start + UNITS_AHEAD]
        )
        for number in range(start, len(units)):
            batch = ahead.popleft().result()
            if number + UNITS_AHEAD < len(units):
                ahead.append(pool.submit(reading.cut, *units[number + UNITS_AHEAD]))
            writer.add(number, units[number][1], batch)
            progress(len(units[number][0]))


@contextlib.contextmanager
def _single_worker() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geotiler-read")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_inputs(inputs: TileInputs) -> _Scenes:
    if not inputs.scenes:
        raise InputError("no scene given: pass SCENE files or a dataset with scenes")
    first_name, first_path = next(iter(inputs.scenes.items()))
    with open_raster(first_path) as first:
        grid = Grid.from_dataset(first)
        count, dtype, nodata = first.count, first.dtypes[0], first.nodata
        blocks = block_layout(first)
        descriptions = tuple(d or "" for d in first.descriptions)
    for name, path in inputs.scenes.items():
        with open_raster(path) as scene:
            if not Grid.from_dataset(scene).almost_equals(grid):
                raise GridMismatchError(
                    f"{path}: scene {name!r} is not on the grid of {first_path} "
                    f"({Grid.from_dataset(scene).describe()} vs {grid.describe()}); "
                    "resample it onto one grid first"
                )
            if scene.count != count or scene.dtypes[0] != dtype:
                raise InputError(
                    f"{path}: scene {name!r} has {scene.count} bands of {scene.dtypes[0]}, "
                    f"{first_path} ({first_name}) has {count} of {dtype}; give scenes alike"
                )
    _check_on_grid(inputs.mask, grid, first_path, what="mask")
    for season, path in inputs.clouds.items():
        _check_on_grid(path, grid, first_path, what=f"cloud mask {season!r}")
    bands = _band_names(inputs.bands, descriptions, count)
    return _Scenes(grid, count, dtype, nodata, blocks.block_rows, blocks.block_cols, bands)


def _check_on_grid(path: Path, grid: Grid, scene: Path, *, what: str) -> None:
    with open_raster(path) as dataset:
        require_single_band_integer(dataset, purpose=f"the {what}")
        other = Grid.from_dataset(dataset)
    if not other.almost_equals(grid):
        raise GridMismatchError(
            f"{path}: the {what} is not on the scene grid ({other.describe()} vs "
            f"{grid.describe()}); run `geotiler rescale {path} --like {scene}` first"
        )


def _band_names(
    given: tuple[str, ...], descriptions: tuple[str, ...], count: int
) -> tuple[str, ...]:
    if len(given) == count:
        return given
    if all(descriptions) and len(set(descriptions)) == count:
        return descriptions
    return tuple(f"band{i}" for i in range(1, count + 1))


def _sources(inputs: TileInputs, name: str, scenes: _Scenes, settings: TileSettings) -> Sources:
    clouds = inputs.clouds.get(name)
    visible: tuple[int, ...] = ()
    if clouds is None and all(b in scenes.bands for b in VISIBLE_BANDS):
        visible = tuple(scenes.bands.index(b) for b in VISIBLE_BANDS)
    return Sources(
        scene=str(inputs.scenes[name]),
        mask=str(inputs.mask),
        clouds=None if clouds is None else str(clouds),
        scene_nodata=scenes.nodata,
        mask_nodata=inputs.classes.nodata,
        num_classes=max(inputs.classes.ids) + 1,
        visible=visible,
        cloud_brightness=settings.cloud_brightness,
        cloud_whiteness=settings.cloud_whiteness,
    )


def _active_positions(layout: TileLayout, aoi: str | None) -> np.ndarray:
    rows, cols = np.meshgrid(layout.row_offsets, layout.col_offsets, indexing="ij")
    if aoi is None:
        return np.ones(rows.shape, dtype=bool)
    inside = touching(layout.bounds(rows.ravel(), cols.ravel()), read_area(aoi, layout.grid.crs))
    if not inside.any():
        raise InputError(f"{aoi}: no tile of the scene touches the area")
    return inside.reshape(rows.shape)


def _meta(
    inputs: TileInputs, settings: TileSettings, scenes: _Scenes, shard: int, command: str | None
) -> dict[str, Any]:
    grid = scenes.grid
    tiling = {
        "scenes": {k: str(v) for k, v in inputs.scenes.items()},
        "mask": str(inputs.mask),
        "clouds": {k: str(v) for k, v in inputs.clouds.items()},
        "size": settings.size,
        "overlap": settings.overlap,
        "aoi": settings.aoi,
        "classes": inputs.classes.model_dump(mode="json"),
        "bands": list(scenes.bands),
        "shard_tiles": shard,
        "cloud_test": [settings.cloud_brightness, settings.cloud_whiteness],
        "order": "scene-major",
    }
    return {
        "format": "geotiler-tiles",
        "version": 1,
        "library_version": __version__,
        "crs": grid.crs.to_wkt(),
        "transform": list(grid.transform)[:6],
        "shape": list(grid.shape),
        "tile_size": settings.size,
        "stride": settings.stride,
        "overlap": settings.overlap,
        "shard_tiles": shard,
        "bands": list(scenes.bands),
        "dtype": scenes.dtype,
        "scene_nodata": scenes.nodata,
        "classes": inputs.classes.model_dump(mode="json"),
        "nodata": inputs.classes.nodata,
        "num_classes": max(inputs.classes.ids) + 1,
        "scenes": list(inputs.scenes),
        "sources": tiling,
        "tiling": tiling,
        "settings": settings.model_dump(mode="json"),
        "command": command,
    }


def count_positions(inputs: TileInputs, settings: TileSettings) -> int:
    """Tile positions over every scene within the AOI (a progress total).

    Checks the inputs as :func:`make_tiles` does, so a bad one fails before progress is shown.

    Raises:
        GridMismatchError: the scenes, the mask or a cloud mask are not on one grid.
        InputError: bad scenes or mask, or an AOI that cannot be read or touches no tile.
    """
    grid = _check_inputs(inputs).grid
    active = _active_positions(TileLayout(grid, settings.size, settings.stride), settings.aoi)
    return int(active.sum()) * len(inputs.scenes)
