"""Tile filters: a registry of named rules that drop tiles, judged from the tile index alone.

A filter is written ``NAME[:ARG]`` on the command line (``--filter water-only:0.9``). Each filter
returns, for every tile, whether it *drops* the tile; a tile's verdict is ``keep`` or the name of
the first filter (in the order given) that drops it.

- ``nodata[:max_fraction]`` (default 0.5): drop tiles with more nodata than the fraction.
- ``water-only[:min_fraction]`` (default 1.0): drop tiles whose valid pixels are at least that
  fraction in classes tagged ``water``.
- ``cloud[:max_fraction]`` (default 0.2): drop tiles whose valid pixels are cloudier than that.
- ``dominant[:max_fraction]`` (default 0.95): drop tiles where one class covers more than that
  fraction of the valid pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from geotiler.catalog import ClassTable
from geotiler.errors import InputError


@dataclass(frozen=True)
class TileIndex:
    """Per-tile facts the decisions are made from (one row per stored tile)."""

    scene: np.ndarray
    row: np.ndarray
    col: np.ndarray
    valid_px: np.ndarray
    cloudy_px: np.ndarray
    class_counts: np.ndarray
    band_sum: np.ndarray
    band_sumsq: np.ndarray
    tile_size: int
    stride: int

    def __len__(self) -> int:
        return len(self.row)

    @property
    def valid_fraction(self) -> np.ndarray:
        return self.valid_px / float(self.tile_size**2)

    @property
    def cloud_fraction(self) -> np.ndarray:
        """Cloudy share of the valid pixels; NaN where it could not be measured."""
        return np.where(self.cloudy_px < 0, np.nan, self.cloudy_px / np.maximum(self.valid_px, 1))


FilterFn = Callable[[TileIndex, float, ClassTable], np.ndarray]


@dataclass(frozen=True)
class FilterSpec:
    """One filter as given: its registered name and its argument (a fraction)."""

    name: str
    arg: float

    def __str__(self) -> str:
        return f"{self.name}:{self.arg:g}"


def drop_nodata(index: TileIndex, max_fraction: float, classes: ClassTable) -> np.ndarray:
    return (1.0 - index.valid_fraction) > max_fraction


def drop_water_only(index: TileIndex, min_fraction: float, classes: ClassTable) -> np.ndarray:
    water = classes.with_tag("water")
    if not water:
        raise InputError(
            f"class table {classes.name!r} has no class tagged 'water'; the water-only filter "
            "needs one (add tags: [water] to a class)"
        )
    counts = index.class_counts
    water_px = counts[:, [w for w in water if w < counts.shape[1]]].sum(axis=1)
    share = water_px / np.maximum(index.valid_px, 1)
    return share >= min_fraction - 1e-12


def drop_cloud(index: TileIndex, max_fraction: float, classes: ClassTable) -> np.ndarray:
    fraction = index.cloud_fraction
    if len(fraction) and np.isnan(fraction).all():
        raise InputError(
            "the cloud filter needs a cloud fraction: give cloud masks (--clouds SCENE=FILE or "
            "the dataset's cloud_masks in the catalog), or scenes with bands named B02, B03, B04 "
            "for the spectral test"
        )
    return np.nan_to_num(fraction, nan=0.0) > max_fraction


def drop_dominant(index: TileIndex, max_fraction: float, classes: ClassTable) -> np.ndarray:
    top = index.class_counts.max(axis=1, initial=0)
    return top / np.maximum(index.valid_px, 1) > max_fraction


FILTERS: dict[str, tuple[FilterFn, float]] = {
    "nodata": (drop_nodata, 0.5),
    "water-only": (drop_water_only, 1.0),
    "cloud": (drop_cloud, 0.2),
    "dominant": (drop_dominant, 0.95),
}
"""Filter name -> (function returning True where the tile is dropped, default argument)."""


def parse_filter(text: str) -> FilterSpec:
    """``NAME[:ARG]`` to a :class:`FilterSpec` (ARG a fraction in [0, 1]).

    Raises:
        InputError: unknown name or an argument that is not a fraction.
    """
    name, _, arg = text.strip().partition(":")
    if name not in FILTERS:
        raise InputError(f"unknown filter {name!r}; known: {', '.join(FILTERS)}")
    if not arg:
        return FilterSpec(name, FILTERS[name][1])
    try:
        value = float(arg)
    except ValueError:
        raise InputError(f"filter {name}: argument {arg!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise InputError(f"filter {name}: argument {value:g} must be a fraction in [0, 1]")
    return FilterSpec(name, value)


def apply_filters(
    index: TileIndex, specs: Sequence[FilterSpec], classes: ClassTable
) -> tuple[np.ndarray, list[str]]:
    """Verdict codes per tile (0 = keep, k = dropped by the k-th distinct spec) and their names."""
    verdict = np.zeros(len(index), dtype=np.uint8)
    names = ["keep"]
    for number, spec in enumerate(dict.fromkeys(specs), start=1):
        function, _ = FILTERS[spec.name]
        dropped = np.asarray(function(index, spec.arg, classes), dtype=bool)
        verdict[(verdict == 0) & dropped] = number
        names.append(str(spec))
    return verdict, names
