"""The tile stage: scenes and their masks into a Zarr tile store; :func:`run_tile` is the stage.

:func:`run_tile` resolves the scenes (paths or a catalog dataset), the class table and the output,
plans the tiles once (:mod:`geotiler.tiles.plan`) and calls :func:`make_tiles`, which streams each
scene's rows in bands of tile rows (Dask tasks read column groups in parallel while the main thread
writes the previous band's shards; small scenes are read whole, several at a time), then filters,
splits and balances the tiles from their index and marks the store complete. An interrupted run
resumes when re-run with the same inputs. The CLI command and the pipeline both call
:func:`run_tile`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import rasterio

from geotiler import __version__
from geotiler.catalog import Catalog, ClassTable
from geotiler.errors import GeotilerError, InputError, RasterError
from geotiler.outputs import writes
from geotiler.parallel import use_scheduler
from geotiler.progress import ProgressFactory, no_progress
from geotiler.tiles.classes import resolve_classes
from geotiler.tiles.cut import TileArrays, TileBatch, cut_unit, empty_batch
from geotiler.tiles.decisions import decide
from geotiler.tiles.plan import MAX_SHARD_BYTES, UNIT_TILE_BYTES, UNITS_AHEAD, TilePlan, make_plan
from geotiler.tiles.read import SMALL_SCENE_BYTES, RowBuffer
from geotiler.tiles.scenes import (
    Scene,
    Unpaired,
    attach_clouds,
    catalog_scenes,
    parse_cloud_masks,
    resolve_scenes,
)
from geotiler.tiles.schema import SceneRecord, StoreAttrs
from geotiler.tiles.settings import TileSettings
from geotiler.tiles.store import TileStore, load_index
from geotiler.tiles.writer import StoreWriter

log = logging.getLogger(__name__)
Progress = Callable[[int], None]
CHIP_SHARD_TILES = 256
CHIP_SCENES = 10
TASK_TILES = 16
"""Small scenes' units are cut this many tiles to a thread pool task (see :func:`_tasks`)."""
PIECE_COLS = 2048


@dataclass(frozen=True)
class TileInputs:
    """What a tile run reads: scenes, their class table and band names (resolved once)."""

    scenes: list[Scene]
    classes: ClassTable
    bands: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    """Scenes left out because they could not be opened (``--skip-bad``)."""

    def files(self, settings: TileSettings | None = None) -> list[str | Path]:
        """Every file the tiling reads (an output must be none of them)."""
        areas = [settings.aoi, *settings.split_aoi.values()] if settings else []
        scene_files = [p for s in self.scenes for p in (s.image, s.mask, s.clouds) if p]
        return [*scene_files, *filter(None, areas)]

    @classmethod
    def seasons(
        cls,
        images: Mapping[str, Path],
        mask: Path,
        classes: ClassTable,
        *,
        clouds: Mapping[str, Path] | None = None,
        bands: tuple[str, ...] = (),
    ) -> TileInputs:
        """Scenes named by ``images``' keys on one grid, sharing ``mask`` (one group)."""
        scenes = [
            Scene.read(name, Path(path), mask, Path(mask).stem) for name, path in images.items()
        ]
        return cls(attach_clouds(scenes, clouds or {}), classes, bands)


def tile_inputs(
    catalog: Catalog | None,
    dataset: str | None,
    settings: TileSettings,
    *,
    images: Sequence[str | PathLike[str]] = (),
    masks: Sequence[str | PathLike[str]] = (),
    clouds: Sequence[str] = (),
    unpaired: Unpaired = "error",
) -> TileInputs:
    """Scenes, class table and band names from paths, else from the catalog's dataset.

    Raises:
        InputError: unpaired files, a missing mask, an unknown class table...
    """
    table: ClassTable | None
    bands: tuple[str, ...]
    skipped: list[str] = []
    if images:
        try:
            scenes = resolve_scenes(
                images, masks, unpaired=unpaired, skipped=skipped if settings.skip_bad else None
            )
        except RasterError as exc:
            raise RasterError(f"{exc}; fix or remove it, or pass --skip-bad") from exc
        table, bands = None, ()
    else:
        if catalog is None:
            raise InputError("no images given and no catalog to find a dataset in")
        mask = Path(masks[0]) if len(masks) == 1 else None
        if len(masks) > 1:
            raise InputError("several --mask files need their images: pass the images too")
        scenes = catalog_scenes(catalog, dataset, mask=mask)
        entry = catalog.dataset(dataset)
        table, bands = catalog.dataset_classes(dataset), tuple(entry.bands)
    scenes = attach_clouds(scenes, parse_cloud_masks(clouds, [s.name for s in scenes]))
    distinct_masks = list(dict.fromkeys(s.mask for s in scenes if s.mask is not None))
    if not distinct_masks:
        raise InputError(
            f"{scenes[0].image}: no mask to label the tiles with; pass --mask MASK.tif (a file, "
            "a folder or a glob, paired with the images by name): every argument is an image"
        )
    classes = resolve_classes(
        settings.classes,
        settings.nodata,
        catalog=catalog,
        dataset_table=table,
        masks=distinct_masks,
    )
    return TileInputs(scenes, classes, bands, tuple(skipped))


def run_tile(
    catalog: Catalog | None,
    dataset: str | None,
    settings: TileSettings,
    *,
    images: Sequence[str | PathLike[str]] = (),
    masks: Sequence[str | PathLike[str]] = (),
    clouds: Sequence[str] = (),
    unpaired: Unpaired = "error",
    output: str | PathLike[str] | None = None,
    overwrite: bool = False,
    progress: ProgressFactory = no_progress,
    command: str | None = None,
) -> TileStore:
    """The tile stage, as the CLI and the pipeline run it (see the module docstring)."""
    with _gdal_env(settings):
        inputs = tile_inputs(
            catalog, dataset, settings, images=images, masks=masks, clouds=clouds,
            unpaired=unpaired,
        )  # fmt: skip
        if output is None:
            if catalog is None:
                raise InputError("no output store given: pass -o STORE.zarr")
            output = catalog.output_path("tile", dataset)
        plan = plan_tiles(inputs, settings)
    with progress("tile", plan.total, "tiles") as advance:
        return make_tiles(
            inputs, output, settings, plan=plan, overwrite=overwrite, progress=advance,
            command=command,
        )  # fmt: skip


def plan_tiles(inputs: TileInputs, settings: TileSettings) -> TilePlan:
    """Check the inputs and decide the tiles (:func:`geotiler.tiles.plan.make_plan`)."""
    return make_plan(inputs.scenes, inputs.classes, settings.plan_settings(), bands=inputs.bands)


@writes("output", "store", keep=True, inputs=lambda a: a["inputs"].files(a["settings"]))
def make_tiles(
    inputs: TileInputs,
    output: str | PathLike[str],
    settings: TileSettings,
    *,
    plan: TilePlan | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    command: str | None = None,
) -> TileStore:
    """Cut ``inputs`` into the store at ``output`` (resuming an unfinished one).

    ``plan`` is :func:`plan_tiles`' result when the caller already made it (for a progress
    total); ``progress`` is called with the number of tile positions done.

    Raises:
        InputError: bad scenes or masks, no tile with a valid pixel, none left for training.
        GridMismatchError: a mask over another extent or CRS than its image.
        RasterError: a scene cannot be read (unless ``settings.skip_bad``).
    """
    plan = plan or plan_tiles(inputs, settings)
    classes = inputs.classes
    attrs = _attrs(plan, classes, settings, command)
    writer = StoreWriter.open(output, attrs, capacity=plan.total, overwrite=overwrite)
    reading = _Reading(plan, settings)
    try:
        if not writer.done:
            units = plan.units(
                band_memory_bytes=settings.band_memory_mb * 2**20,
                max_tiles=max(1, UNIT_TILE_BYTES // plan.tile_bytes),
            )
            with _gdal_env(settings), use_scheduler(settings.scheduler, workers=settings.workers):
                _stream(writer, units, reading, progress or _ignore, settings.workers)
        if writer.finish() == 0:
            masks = ", ".join(str(s.mask) for s in plan.scenes[:3])
            raise InputError(
                f"{masks}: no tile has a valid pixel (labelled, with imagery); check the masks' "
                "nodata (--nodata) and the --aoi"
            )
        decisions = decide(load_index(output), classes, writer.attrs.scenes, settings.decisions())
    except GeotilerError:
        writer.discard()
        raise
    skipped = sorted({*inputs.skipped, *reading.skipped})
    writer.complete(decisions.attrs, decisions.arrays, skipped=skipped)
    return TileStore.open(output)


def _ignore(_: int) -> None:
    return None


def _gdal_env(settings: TileSettings) -> rasterio.Env:
    """The GDAL options of the stage's reads (set in this thread, inherited by others).

    GDAL's default cache (5% of RAM) would fill with blocks never read again. And GDAL lists a
    file's folder on every open to look for its sidecars: with thousands of chips in a folder
    that listing was 80% of an open; ``GDAL_DISABLE_READDIR_ON_OPEN=TRUE`` looks for each
    sidecar by name instead, so world files and ``.aux.xml`` are still found.
    """
    return rasterio.Env(GDAL_CACHEMAX=settings.gdal_cache_mb, GDAL_DISABLE_READDIR_ON_OPEN="TRUE")


def _attrs(
    plan: TilePlan, classes: ClassTable, settings: TileSettings, command: str | None
) -> StoreAttrs:
    records = tuple(
        SceneRecord(
            name=scene.name,
            group=scene.group,
            image=str(scene.image),
            mask=str(scene.mask),
            clouds=None if scene.clouds is None else str(scene.clouds),
            mask_resampled=sources.mask.resampled,
            mask_rgb=sources.mask.rgb,
            split=scene.split,
            **SceneRecord.describe_grid(scene.grid),
        )
        for scene, sources in zip(plan.scenes, plan.sources, strict=True)
    )
    # A shard per band of tile rows; many small chips fill shards of many chips each.
    chips = len(plan.scenes) >= CHIP_SCENES and plan.widest < 8
    preferred = CHIP_SHARD_TILES if chips else plan.widest
    shard = settings.shard_tiles or int(
        np.clip(preferred, 8, max(8, MAX_SHARD_BYTES // plan.tile_bytes))
    )
    tiling = {
        "scenes": [
            r.model_dump(mode="json", include={"name", "image", "mask", "clouds"}) for r in records
        ],
        "size": plan.size_px,
        "overlap": plan.size_px - plan.stride_px,
        "aoi": settings.aoi,
        "classes": classes.model_dump(mode="json"),
        "bands": list(plan.bands),
        "shard_tiles": shard,
        "cloud_test": [settings.cloud_brightness, settings.cloud_whiteness],
        "order": "scene-major",
    }
    return StoreAttrs(
        library_version=__version__,
        scenes=records,
        tile_size=plan.size_px,
        stride=plan.stride_px,
        shard_tiles=shard,
        bands=plan.bands,
        dtype=plan.dtype,
        scene_nodata=plan.scene_nodata,
        classes=classes,
        settings=settings.model_dump(mode="json"),
        plan=plan.choices,
        tiling=tiling,
        command=command,
    )


class _Reading:
    """Cuts units: a big scene's rows through one :class:`RowBuffer` (one scene at a time); a
    small scene whole, in whichever thread cuts it (several at a time)."""

    def __init__(self, plan: TilePlan, settings: TileSettings) -> None:
        self.plan = plan
        self.budget = settings.band_memory_mb * 2**20
        self.skip_bad = settings.skip_bad
        self.skipped: set[str] = set()
        self.buffer: tuple[int, RowBuffer] | None = None
        # The writer stores unit n (and copies its leftovers) while the next ones are cut.
        self.arrays = tuple(TileArrays() for _ in range(UNITS_AHEAD + 1))
        self.cuts = 0

    @property
    def parallel(self) -> bool:
        """Whether every scene is small enough to be cut in parallel with others."""
        return all(self._small(n) for n in range(len(self.plan.scenes)))

    def _small(self, number: int) -> bool:
        rows, cols = self.plan.scenes[number].grid.shape
        itemsize = np.dtype(self.plan.dtype).itemsize
        return len(self.plan.bands) * rows * cols * itemsize <= SMALL_SCENE_BYTES

    def _rows(self, number: int) -> RowBuffer:
        plan = self.plan
        rows = plan.scenes[number].grid.rows
        per_band = plan.rows_per_band(number, self.budget)
        return RowBuffer(
            plan.sources[number],
            shape=(len(plan.bands), rows, plan.scenes[number].grid.cols),
            dtype=np.dtype(plan.dtype),
            block=plan.blocks[number],
            capacity=min(rows, (per_band - 1) * plan.stride_px + plan.size_px),
            piece_cols=PIECE_COLS,
        )

    def cut_units(self, units: list[tuple[np.ndarray, int]]) -> list[TileBatch]:
        """:meth:`cut` each of ``units`` (tiles, scene number), in order."""
        return [self.cut(tiles, number) for tiles, number in units]

    def cut(self, tiles: np.ndarray, number: int) -> TileBatch:
        try:
            if self._small(number):
                return cut_unit(
                    self.plan.sources[number], self._rows(number), tiles, self.plan.size_px
                )
            if self.buffer is None or self.buffer[0] != number:
                self.buffer = None  # free the previous scene's rows first
                self.buffer = (number, self._rows(number))
            self.cuts += 1
            arrays = self.arrays[self.cuts % len(self.arrays)]
            return cut_unit(
                self.plan.sources[number], self.buffer[1], tiles, self.plan.size_px, arrays
            )
        except RasterError as exc:
            if not self.skip_bad:
                raise RasterError(f"{exc}; fix or remove it, or pass --skip-bad") from exc
            log.warning("skipped scene %s: %s", self.plan.scenes[number].name, exc)
            self.skipped.add(self.plan.scenes[number].name)
            return empty_batch(
                len(self.plan.bands), self.plan.size_px, self.plan.sources[number].num_classes,
                np.dtype(self.plan.dtype),
            )  # fmt: skip


def _stream(
    writer: StoreWriter,
    units: list[tuple[np.ndarray, int]],
    reading: _Reading,
    progress: Progress,
    workers: int | None,
) -> None:
    """Cut the units in order, a few ahead of the writer; skip those already written.

    Working ahead keeps the writer busy while a unit that starts a new band of rows is read;
    small scenes are cut by several threads at once.
    """
    start = writer.resume_unit
    progress(sum(len(tiles) for tiles, _ in units[:start]))
    threads = (workers or _cpus()) if reading.parallel else 1
    tasks = _tasks(units, start, TASK_TILES if reading.parallel else 0)
    ahead_count = UNITS_AHEAD * threads
    with _workers(threads) as pool:

        def submit(task: range) -> Future[list[TileBatch]]:
            return pool.submit(reading.cut_units, [units[n] for n in task])

        ahead = deque(submit(task) for task in tasks[:ahead_count])
        for number, task in enumerate(tasks):
            batches = ahead.popleft().result()
            if number + ahead_count < len(tasks):
                ahead.append(submit(tasks[number + ahead_count]))
            for unit, batch in zip(task, batches, strict=True):
                writer.add(unit, units[unit][1], batch)
                progress(len(units[unit][0]))


def _tasks(units: list[tuple[np.ndarray, int]], start: int, min_tiles: int) -> list[range]:
    """Units cut per pool task from ``start`` on: consecutive ones up to ``min_tiles`` tiles.

    With ``min_tiles`` 0, one unit a task. Small scenes go several to a task: with one tile a
    unit (chips), a future and two thread wake-ups per unit were 13% of the GIL-held time.
    """
    tasks, first, tiles = [], start, 0
    for number in range(start, len(units)):
        tiles += len(units[number][0])
        if tiles >= min_tiles:
            tasks.append(range(first, number + 1))
            first, tiles = number + 1, 0
    if first < len(units):
        tasks.append(range(first, len(units)))
    return tasks


def _thread_env() -> None:
    """Give a reading thread one rasterio environment for its life.

    With it, :func:`geotiler.tiles.files.open_file` opens without rasterio's per-open
    environment. It inherits the caller's GDAL options (set in the main thread); the options it
    sets itself are thread-local in GDAL, so they end with the thread.
    """
    rasterio.Env().__enter__()


def _cpus() -> int:
    return os.cpu_count() or 1


@contextlib.contextmanager
def _workers(count: int) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(
        max_workers=count, thread_name_prefix="geotiler-read", initializer=_thread_env
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["TileInputs", "TileSettings", "make_tiles", "run_tile", "tile_inputs"]
