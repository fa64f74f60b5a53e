"""The tile plan: the scenes, a tile layout per scene, the positions to cut and the units of work.

:func:`make_plan` opens every scene, mask and cloud mask once, checks them (bands and dtypes alike,
masks over their image's extent, cloud masks on their scene's grid, every scene at least one tile),
chooses what was left open (the tile size, from the scenes' sizes) and records why. The progress
bar's total, the cutting and the summary all read the same :class:`TilePlan`; nothing is checked
twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geotiler.catalog import ClassTable
from geotiler.errors import GridMismatchError, InputError
from geotiler.grid import Grid
from geotiler.io import open_raster, require_single_band_integer
from geotiler.limits import check_hold, check_tile_memory
from geotiler.tiles.footprints import read_area, touching
from geotiler.tiles.layout import TileLayout, plan_units, tile_rows_per_band
from geotiler.tiles.masks import mask_reader
from geotiler.tiles.read import VISIBLE_BANDS, Sources
from geotiler.tiles.scenes import ImageInfo, Scene, read_image

log = logging.getLogger(__name__)

DEFAULT_TILE_PX = 300
TILE_SIZES_PX = (300, 256, 224, 192, 160, 128, 96, 64, 48, 32)
"""Sizes the planner tries, largest first, when a dataset is too small for 300 px tiles."""
MIN_POSITIONS = 48
"""Tile positions a dataset of few scenes should have, so blocked splits can have each split."""
CHIP_SIDE_PX = 600
# What the cutting holds at once, for the memory check (geotiler.tiles.run cuts within these).
MAX_SHARD_BYTES = 64 * 2**20
"""Shard files of <= 64 MiB: zarr holds a shard about three times over while encoding it."""
UNIT_TILE_BYTES = 128 * 2**20
"""Tile pixels cut per unit; ``UNITS_AHEAD + 1`` units' worth are held at a time."""
UNITS_AHEAD = 2
POSITION_BYTES = 256
"""Memory a tile position costs while planning and deciding (offsets, index rows, masks)."""
"""Scenes under this side are chips: tiled whole, one tile of the smallest scene's side."""


@dataclass(frozen=True)
class PlanSettings:
    """What the plan depends on (a subset of the stage's settings)."""

    size_px: int | None
    overlap_px: int
    aoi: str | None = None
    cloud_brightness: float = 3000.0
    cloud_whiteness: float = 0.2


@dataclass(frozen=True)
class TilePlan:
    """Scenes, their layouts and the positions to cut (``active``: one bool grid per scene)."""

    scenes: tuple[Scene, ...]
    layouts: tuple[TileLayout, ...]
    active: tuple[np.ndarray, ...]
    sources: tuple[Sources, ...]
    blocks: tuple[tuple[int, int], ...]
    bands: tuple[str, ...]
    dtype: str
    scene_nodata: float | None
    size_px: int
    stride_px: int
    choices: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Tile positions to cut, over every scene (the progress total)."""
        return int(sum(int(a.sum()) for a in self.active))

    @property
    def tile_bytes(self) -> int:
        return len(self.bands) * self.size_px**2 * np.dtype(self.dtype).itemsize

    @property
    def widest(self) -> int:
        return max(layout.shape[1] for layout in self.layouts)

    def units(self, *, band_memory_bytes: int, max_tiles: int) -> list[tuple[np.ndarray, int]]:
        """Units of work ``(tiles (n, 2), scene number)``, scene-major (rows stream once)."""
        units: list[tuple[np.ndarray, int]] = []
        for number, (layout, active) in enumerate(zip(self.layouts, self.active, strict=True)):
            rows = self.rows_per_band(number, band_memory_bytes)
            bands = plan_units(layout, active, tile_rows_per_band=rows, max_tiles=max_tiles)
            units.extend((tiles, number) for tiles in bands)
        return units

    def rows_per_band(self, number: int, band_memory_bytes: int) -> int:
        return tile_rows_per_band(
            self.layouts[number],
            bands=len(self.bands),
            itemsize=np.dtype(self.dtype).itemsize,
            block_rows=self.blocks[number][0],
            budget_bytes=band_memory_bytes,
        )


def make_plan(
    scenes: list[Scene],
    classes: ClassTable,
    settings: PlanSettings,
    *,
    bands: tuple[str, ...] = (),
) -> TilePlan:
    """Check the scenes and decide the tiles (see the module docstring).

    Raises:
        InputError: no scene, unlike scenes, a scene smaller than a tile, a bad mask or AOI.
        GridMismatchError: a mask over another extent or CRS, a cloud mask off its scene's grid.
    """
    if not scenes:
        raise InputError("no scene given: pass images (and masks) or a dataset with scenes")
    opened = [_open(scene) for scene in scenes]
    first = opened[0]
    for scene, info in zip(scenes, opened, strict=True):
        if (info.count, info.dtype) != (first.count, first.dtype):
            raise InputError(
                f"{scene.image}: {info.count} bands of {info.dtype}, but {scenes[0].image} has "
                f"{first.count} of {first.dtype}; every image of a store must be alike"
            )
    _check_seasons(scenes)
    names = _band_names(bands, first.descriptions, first.count, image=scenes[0].image)
    choices: dict[str, Any] = {}
    size = settings.size_px or _choose_size(scenes, choices)
    if settings.overlap_px >= size:
        raise InputError(f"--overlap {settings.overlap_px} must be smaller than the tile {size} px")
    stride = size - settings.overlap_px
    for scene in scenes:
        if min(scene.grid.shape) < size:
            raise InputError(
                f"{scene.image}: {scene.grid.rows} x {scene.grid.cols} px is smaller than one "
                f"tile of {size} px; pass a smaller --size (or leave it out to let geotiler "
                "choose)"
            )
    widest = max(scenes, key=lambda scene: scene.grid.cols)
    check_tile_memory(
        str(widest.image), rows=widest.grid.rows, cols=widest.grid.cols, bands=first.count,
        itemsize=np.dtype(first.dtype).itemsize, size_px=size, units=UNITS_AHEAD + 1,
        unit_bytes=UNIT_TILE_BYTES, shard_bytes=MAX_SHARD_BYTES,
    )  # fmt: skip
    layouts = tuple(TileLayout(scene.grid, size, stride) for scene in scenes)
    positions = sum(layout.shape[0] * layout.shape[1] for layout in layouts)
    check_hold(
        str(widest.image), stage="tile", what=f"{positions:,} tile positions",
        nbytes=positions * POSITION_BYTES, fix="use a larger --size or crop the scene",
    )  # fmt: skip
    active = tuple(
        _active(layout, scene, settings.aoi) for layout, scene in zip(layouts, scenes, strict=True)
    )
    if settings.aoi is not None and not any(a.any() for a in active):
        raise InputError(f"{settings.aoi}: no tile of any scene touches the area")
    sources = tuple(
        _sources(scene, info, classes, names, settings)
        for scene, info in zip(scenes, opened, strict=True)
    )
    return TilePlan(
        scenes=tuple(scenes),
        layouts=layouts,
        active=active,
        sources=sources,
        blocks=tuple(info.blocks for info in opened),
        bands=names,
        dtype=first.dtype,
        scene_nodata=first.nodata,
        size_px=size,
        stride_px=stride,
        choices=choices,
    )


def _open(scene: Scene) -> ImageInfo:
    """The scene's image info: as the resolver read it, else from the file."""
    return scene.info if scene.info is not None else read_image(scene.image)[1]


def _check_seasons(scenes: list[Scene]) -> None:
    """Scenes sharing one mask file (seasons) must share its grid."""
    by_mask: dict[Any, Scene] = {}
    for scene in scenes:
        other = by_mask.setdefault(scene.mask, scene)
        if scene.mask is not None and not scene.grid.almost_equals(other.grid):
            raise GridMismatchError(
                f"{scene.image}: scene {scene.name!r} is not on the grid of {other.image} "
                f"({scene.grid.describe()} vs {other.grid.describe()}), yet they share the mask "
                f"{scene.mask}; seasons must share one grid: resample it onto one grid, or give "
                "one mask per image to tile pairs"
            )


def _choose_size(scenes: list[Scene], choices: dict[str, Any]) -> int:
    """The tile side: 300 px, a chip's side for chips, smaller for a small dataset."""
    smallest = min(min(scene.grid.shape) for scene in scenes)
    groups = {scene.group: scene.grid.shape for scene in scenes}
    if smallest < CHIP_SIDE_PX and len(groups) >= 10:
        size = smallest
        reason = f"chips: one tile of the smallest scene's side ({smallest} px) per chip"
    else:
        fitting = [s for s in TILE_SIZES_PX if s <= smallest] or [smallest]
        size = next((s for s in fitting if _positions(groups, s) >= MIN_POSITIONS), fitting[-1])
        reason = (
            "the default"
            if size == DEFAULT_TILE_PX
            else f"{_positions(groups, size)} tile positions in {len(groups)} scene group(s): "
            f"the largest size giving >= {MIN_POSITIONS} for splits (or the smallest size)"
        )
    choices["tile size"] = {"value": size, "why": reason}
    log.info("tile size %d px: %s", size, reason)
    return size


def _positions(groups: dict[str, tuple[int, int]], size: int) -> int:
    return sum(-(-rows // size) * -(-cols // size) for rows, cols in groups.values())


def _band_names(
    given: tuple[str, ...], descriptions: tuple[str, ...], count: int, *, image: Any
) -> tuple[str, ...]:
    """The catalog's names, else the file's band descriptions, else ``band1..bandN`` (warned
    about once per run: models trained on such a store cannot match a scene's bands by name)."""
    if len(given) == count:
        return given
    if all(descriptions) and len(set(descriptions)) == count:
        return descriptions
    log.warning(
        "warning: %s: its %d bands are not named (no distinct band descriptions), so the store "
        "calls them band1..band%d and predict cannot match a scene's bands by name; name them "
        "in the file (rio edit-info --bidx 1 --description B02 %s, one call per band) or in "
        "the catalog dataset's bands: list",
        image, count, count, image,
    )  # fmt: skip
    return tuple(f"band{i}" for i in range(1, count + 1))


def _active(layout: TileLayout, scene: Scene, aoi: str | None) -> np.ndarray:
    rows, cols = np.meshgrid(layout.row_offsets, layout.col_offsets, indexing="ij")
    if aoi is None:
        return np.ones(rows.shape, dtype=bool)
    crs = scene.grid.require_crs(f"--aoi (scene {scene.name!r}, {scene.image})")
    inside = touching(layout.bounds(rows.ravel(), cols.ravel()), read_area(aoi, crs))
    return inside.reshape(rows.shape)


def _sources(
    scene: Scene,
    info: ImageInfo,
    classes: ClassTable,
    bands: tuple[str, ...],
    settings: PlanSettings,
) -> Sources:
    if scene.mask is None:
        raise InputError(f"{scene.image}: scene {scene.name!r} has no mask; pass --mask")
    mask = mask_reader(scene.grid, str(scene.image), str(scene.mask), classes)
    if scene.clouds is not None:
        _check_on_grid(scene.clouds, scene.grid, scene)
    visible: tuple[int, ...] = ()
    if scene.clouds is None and all(b in bands for b in VISIBLE_BANDS):
        visible = tuple(bands.index(b) for b in VISIBLE_BANDS)
    return Sources(
        scene=str(scene.image),
        mask=mask,
        clouds=None if scene.clouds is None else str(scene.clouds),
        scene_nodata=info.nodata,
        mask_nodata=classes.nodata,
        num_classes=max(classes.ids) + 1,
        visible=visible,
        cloud_brightness=settings.cloud_brightness,
        cloud_whiteness=settings.cloud_whiteness,
    )


def _check_on_grid(path: Any, grid: Grid, scene: Scene) -> None:
    with open_raster(path) as dataset:
        require_single_band_integer(dataset, purpose=f"the cloud mask {scene.name!r}")
        other = Grid.from_dataset(dataset)
    if not other.almost_equals(grid):
        raise GridMismatchError(
            f"{path}: cloud mask {scene.name!r} is not on the scene grid "
            f"({other.describe()} vs {grid.describe()}); run `geotiler rescale {path} --like "
            f"{scene.image}` first"
        )
