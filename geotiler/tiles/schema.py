"""The tile store's attributes: one typed model, read and written in one place.

A store's root attrs hold, under ``geotiler``, a :class:`StoreAttrs`: a record per scene (its own
grid, or a plain pixel grid, its group and source files), the tile geometry, bands, classes, the
settings and plan used, the writer's progress, the decisions (filters, splits, balancing, band
statistics) and ``complete`` (written last). Nothing else reads or writes those keys by name.

Stores written before scenes had their own grids (``version: 1``: one grid for every scene) are
read through :meth:`StoreAttrs.from_raw`, so they keep working.
"""

from __future__ import annotations

from typing import Any, Literal

from affine import Affine
from pydantic import BaseModel, ConfigDict, Field
from rasterio.crs import CRS

from geotiler.catalog import ClassTable
from geotiler.grid import Grid

FORMAT = "geotiler-tiles"
VERSION = 2
SPLITS = ("train", "val", "test")
SOURCES = ("tiled", "corrected")
"""Codes of the optional ``index/source`` array: cut by ``tile``, or added from corrections."""
Split = Literal["train", "val", "test"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SceneRecord(_Model):
    """One scene of the store: where its tiles come from and the grid their positions are on."""

    name: str
    group: str = Field(
        description="scenes sharing a footprint (seasons); splits keep them together"
    )
    image: str
    mask: str
    clouds: str | None = None
    crs: str | None = Field(default=None, description="WKT; None for a plain pixel grid")
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int] = Field(description="(rows, cols)")
    mask_resampled: Literal["nearest", "mode"] | None = None
    mask_rgb: bool = False
    split: Split | None = Field(default=None, description="the dataset's own split, if it has one")

    @property
    def grid(self) -> Grid:
        crs = None if self.crs is None else CRS.from_wkt(self.crs)
        return Grid(crs, Affine(*self.transform), self.shape)

    @classmethod
    def describe_grid(cls, grid: Grid) -> dict[str, Any]:
        """The ``crs``, ``transform`` and ``shape`` fields of a grid."""
        return {
            "crs": None if grid.crs is None else grid.crs.to_wkt(),
            "transform": tuple(grid.transform)[:6],
            "shape": grid.shape,
        }


class WriteProgress(_Model):
    """How far the writer got: tiles in shards, the unit to resume at and tiles of it to skip."""

    tiles_written: int = 0
    unit: int = 0
    skip: int = 0
    done: bool = False


class DecisionAttrs(_Model):
    """What :func:`geotiler.tiles.decisions.decide` decided, and the numbers behind it."""

    settings: dict[str, Any]
    verdicts: tuple[str, ...]
    splits: tuple[str, ...] = SPLITS
    band_mean: tuple[float, ...]
    band_std: tuple[float, ...]
    class_weights: tuple[float, ...] | None = None
    split_policy: str = "block"
    summary: dict[str, Any] = Field(default_factory=dict)


class StoreAttrs(_Model):
    """Everything a tile store records about itself (see the module docstring)."""

    format: Literal["geotiler-tiles"] = "geotiler-tiles"
    version: int = VERSION
    library_version: str
    scenes: tuple[SceneRecord, ...]
    tile_size: int
    stride: int
    shard_tiles: int
    bands: tuple[str, ...]
    dtype: str
    scene_nodata: float | None = None
    classes: ClassTable
    settings: dict[str, Any] = Field(default_factory=dict)
    plan: dict[str, Any] = Field(default_factory=dict, description="choices made and why")
    tiling: dict[str, Any] = Field(description="what the tiles depend on (resuming must match)")
    command: str | None = None
    progress: WriteProgress = WriteProgress()
    decisions: DecisionAttrs | None = None
    complete: bool = False

    @property
    def overlap(self) -> int:
        return self.tile_size - self.stride

    @property
    def nodata(self) -> int | None:
        return self.classes.nodata

    @property
    def num_classes(self) -> int:
        """Length of the class axis of ``class_counts``: the largest class id + 1."""
        return max(self.classes.ids) + 1

    @property
    def scene_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.scenes)

    def scene(self, name: str) -> SceneRecord:
        for record in self.scenes:
            if record.name == name:
                return record
        raise KeyError(f"no scene {name!r}; scenes: {', '.join(self.scene_names)}")

    def to_raw(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> StoreAttrs:
        """Validate stored attrs, upgrading a version-1 store (every scene on one grid)."""
        if raw.get("version", 1) == 1:
            raw = _upgrade_v1(raw)
        return cls.model_validate(raw)


def _upgrade_v1(raw: dict[str, Any]) -> dict[str, Any]:
    tiling = raw.get("tiling", {})
    files = tiling.get("scenes", {})
    clouds = tiling.get("clouds", {})
    scenes = [
        {
            "name": name,
            "group": "scenes",
            "image": files.get(name, ""),
            "mask": tiling.get("mask", ""),
            "clouds": clouds.get(name),
            "crs": raw["crs"],
            "transform": raw["transform"][:6],
            "shape": raw["shape"],
        }
        for name in raw["scenes"]
    ]
    decisions = raw.get("decisions")
    if decisions is not None:
        decisions = {k: v for k, v in decisions.items() if k in DecisionAttrs.model_fields}
    keep = set(StoreAttrs.model_fields) - {"scenes", "decisions", "version"}
    return {
        **{k: v for k, v in raw.items() if k in keep},
        "version": 1,
        "scenes": scenes,
        "decisions": decisions,
    }
