"""Reading a Zarr v3 tile store: :class:`TileStore`, its attrs and its per-tile index.

The layout is described in :mod:`geotiler.tiles.writer`; the attrs in
:mod:`geotiler.tiles.schema`. :meth:`TileStore.open` refuses a store that is not complete.
"""

from __future__ import annotations

import logging
from functools import cached_property
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from pydantic import ValidationError

from geotiler.catalog import ClassTable
from geotiler.errors import StoreError
from geotiler.grid import Grid
from geotiler.tiles.fastread import BatchReader
from geotiler.tiles.filters import TileIndex
from geotiler.tiles.schema import (
    FORMAT,
    SOURCES,
    SPLITS,
    DecisionAttrs,
    SceneRecord,
    Split,
    StoreAttrs,
)
from geotiler.tiles.verify import incomplete_message, unreadable_tile, verify_on_open

log = logging.getLogger(__name__)

ATTRS_KEY = "geotiler"
STAT_ARRAYS = ("valid_px", "cloudy_px", "class_counts", "band_sum", "band_sumsq")


def read_attrs(path: str | PathLike[str]) -> StoreAttrs | None:
    """The attrs of a store at ``path``, or None when it is not a geotiler store.

    Raises:
        StoreError: a geotiler store whose attrs do not validate (damaged or from the future).
    """
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError, NotADirectoryError):
        return None
    raw = group.attrs.asdict().get(ATTRS_KEY)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None
    try:
        return StoreAttrs.from_raw(raw)
    except (ValidationError, KeyError, TypeError) as exc:
        raise StoreError(
            f"{path}: the tile store's attrs are damaged or from a newer geotiler ({exc}); "
            "re-run `geotiler tile`"
        ) from exc


def attrs_of(group: Any) -> StoreAttrs:
    """The attrs of an open store group (known to be a geotiler store)."""
    return StoreAttrs.from_raw(dict(group.attrs[ATTRS_KEY]))


def save_attrs(group: Any, attrs: StoreAttrs) -> None:
    """Write ``attrs`` (the only place the store's attrs are written)."""
    group.attrs[ATTRS_KEY] = attrs.to_raw()


def check_store(path: str | PathLike[str], *, written_only: bool = False) -> StoreAttrs:
    """The attrs of the store at ``path`` if complete (or, ``written_only``, all tiles written).

    Raises:
        StoreError: missing, not a geotiler tile store, or incomplete (saying how to finish it).
    """
    where = Path(path)
    if not where.exists():
        raise StoreError(f"{where}: tile store not found; make it with `geotiler tile`")
    attrs = read_attrs(where)
    if attrs is None:
        raise StoreError(f"{where}: not a geotiler tile store (no '{ATTRS_KEY}' attrs)")
    if not attrs.complete and not (written_only and attrs.progress.done):
        raise StoreError(incomplete_message(where, attrs.to_raw()))
    return attrs


def load_index(path: str | PathLike[str]) -> TileIndex:
    """The per-tile facts of the (fully written) store at ``path``, for new decisions."""
    group: Any = zarr.open_group(str(path), mode="r")
    attrs = attrs_of(group)
    index = group["index"]
    columns = {name: np.asarray(index[name][:]) for name in ("scene", "row", "col", *STAT_ARRAYS)}
    return TileIndex(**columns, tile_size=attrs.tile_size, stride=attrs.stride)


FLAG_ATTRS = {"split": SPLITS}


def write_decisions(group: Any, decisions: DecisionAttrs, arrays: dict[str, np.ndarray]) -> None:
    """Replace the decision arrays (verdict, split, weight) and the ``decisions`` attrs.

    The store is marked incomplete while they change; the caller marks it complete again.
    """
    attrs = attrs_of(group)
    if attrs.complete:  # each save rewrites every scene's record: skip the ones not needed
        save_attrs(group, attrs.model_copy(update={"complete": False}))
    write_decision_arrays(group, decisions, arrays)
    save_attrs(group, attrs.model_copy(update={"decisions": decisions, "complete": False}))


def write_decision_arrays(
    group: Any, decisions: DecisionAttrs, arrays: dict[str, np.ndarray]
) -> None:
    """Replace the decision arrays of an incomplete store (the caller saves the attrs)."""
    meanings = {"verdict": decisions.verdicts, "split": decisions.splits}
    index = group["index"]
    for name, values in arrays.items():
        array = index.create_array(
            name,
            shape=values.shape,
            dtype=values.dtype,
            chunks=(max(len(values), 1),),
            overwrite=True,
            dimension_names=("tile",),
        )
        array[:] = values
        if name in meanings:
            # CF flags: xarray users see what the codes mean.
            array.attrs.update(
                {
                    "flag_values": list(range(len(meanings[name]))),
                    "flag_meanings": " ".join(m.replace(" ", "_") for m in meanings[name]),
                }
            )


def mark_complete(group: Any) -> None:
    attrs = attrs_of(group)
    save_attrs(group, attrs.model_copy(update={"complete": True}))


class TileStore:
    """Read access to a complete tile store (cheap to pickle: only the path travels)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._group: Any = zarr.open_group(str(path), mode="r")
        self.attrs: StoreAttrs = attrs_of(self._group)
        self._readers: dict[tuple[str, int | None], BatchReader] = {}

    @classmethod
    def open(cls, path: str | PathLike[str]) -> TileStore:
        """Open the store at ``path``.

        Raises:
            StoreError: missing, not a geotiler tile store, or incomplete.
        """
        where = Path(path)
        verify_on_open(where, check_store(where).to_raw())
        return cls(where)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def __len__(self) -> int:
        return int(self._group["masks"].shape[0])

    def __repr__(self) -> str:
        return f"TileStore({str(self.path)!r}, tiles={len(self)}, size={self.tile_size})"

    def describe(self) -> str:
        """One line: tile size, stride, bands, dtype, scenes and classes."""
        names = self.scenes
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return (
            f"{self.tile_size} px every {self.stride} px, {len(self.bands)} bands "
            f"({', '.join(self.bands)}) of {self.image_dtype}, {len(names)} scene(s) ({shown}), "
            f"classes {self.classes.name!r} (nodata {self.nodata})"
        )

    @property
    def tile_size(self) -> int:
        return self.attrs.tile_size

    @property
    def stride(self) -> int:
        return self.attrs.stride

    @property
    def shard_tiles(self) -> int:
        return self.attrs.shard_tiles

    @property
    def bands(self) -> tuple[str, ...]:
        return self.attrs.bands

    @property
    def image_dtype(self) -> np.dtype:
        return np.dtype(self.attrs.dtype)

    @property
    def classes(self) -> ClassTable:
        return self.attrs.classes

    @property
    def nodata(self) -> int | None:
        return self.attrs.nodata

    @property
    def num_classes(self) -> int:
        return self.attrs.num_classes

    @property
    def scenes(self) -> tuple[str, ...]:
        return self.attrs.scene_names

    def scene(self, name: str) -> SceneRecord:
        return self.attrs.scene(name)

    def to_xarray(self) -> Any:
        """The store as an ``xarray.DataTree``, read lazily (dask arrays, nothing loaded).

        The root holds ``images`` ``(tile, band, y, x)``, ``masks`` ``(tile, y, x)`` and the
        ``band`` coordinate; the ``index`` group the per-tile index (scene, row, col, verdict,
        split, class counts...). Same as ``xarray.open_datatree(path, engine="zarr")``.

        Examples:
            >>> tree = geotiler.open_store("tiles.zarr").to_xarray()  # doctest: +SKIP
            >>> tree["masks"].isel(tile=0).plot()  # doctest: +SKIP
        """
        import xarray

        # geotiler writes no consolidated metadata: say so, or xarray warns on every open.
        return xarray.open_datatree(str(self.path), engine="zarr", chunks={}, consolidated=False)

    def grid(self, scene: str) -> Grid:
        """The grid of ``scene`` (tile positions are pixel rows and columns on it)."""
        return self.attrs.scene(scene).grid

    @property
    def decisions(self) -> DecisionAttrs:
        if self.attrs.decisions is None:
            raise StoreError(f"{self.path}: the store has no decisions; re-run `geotiler filter`")
        return self.attrs.decisions

    @property
    def band_mean(self) -> np.ndarray:
        return np.asarray(self.decisions.band_mean, dtype=np.float64)

    @property
    def band_std(self) -> np.ndarray:
        return np.asarray(self.decisions.band_std, dtype=np.float64)

    @property
    def class_weights(self) -> np.ndarray | None:
        weights = self.decisions.class_weights
        return None if weights is None else np.asarray(weights, dtype=np.float64)

    def column(self, name: str) -> np.ndarray:
        """One ``index/<name>`` array, read whole (the index is small)."""
        return np.asarray(self._group["index"][name][:])

    @cached_property
    def _verdict(self) -> np.ndarray:
        return self.column("verdict")

    @cached_property
    def _split(self) -> np.ndarray:
        return self.column("split")

    @cached_property
    def _weight(self) -> np.ndarray:
        return self.column("weight")

    def indices(self, split: Split | None = None) -> np.ndarray:
        """Ids of the kept tiles (verdict ``keep``), optionally only those of ``split``."""
        keep = self._verdict == 0
        if split is not None:
            if split not in SPLITS:
                raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
            keep &= self._split == SPLITS.index(split)
        return np.flatnonzero(keep).astype(np.int64)

    def sampling_weights(self, indices: np.ndarray) -> np.ndarray:
        """Per-tile sampling weights (1.0 everywhere when balancing is off)."""
        return self._weight[np.asarray(indices, dtype=np.int64)].astype(np.float64)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Tile ``i``: image ``(B, S, S)`` in the scene dtype and mask ``(S, S)`` uint8."""
        if not 0 <= i < len(self):
            raise IndexError(f"tile {i} out of range 0..{len(self) - 1}")
        try:
            return np.asarray(self._group["images"][i]), np.asarray(self._group["masks"][i])
        except Exception as exc:  # zarr and its codecs raise several kinds on damaged bytes
            raise unreadable_tile(self.path, self.attrs.to_raw(), i, exc) from exc

    @cached_property
    def sources(self) -> np.ndarray:
        """Per tile: 0 cut by ``tile``, 1 added from corrections (all 0 without ``source``)."""
        if "source" in self._group["index"].array_keys():
            return self.column("source")
        return np.zeros(len(self), np.uint8)

    def read_many(
        self,
        ids: np.ndarray | list[int],
        *,
        backend: str = "auto",
        threads: int | None = None,
        out: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tiles ``ids`` (any order, repeats allowed) at once: images ``(n, B, S, S)``, masks.

        The same tiles as :meth:`read`, read in runs through ``backend`` (see
        :mod:`geotiler.tiles.fastread`) with ``threads`` decoding threads (None: its default),
        into ``out`` when given.
        """
        key = (backend, threads)
        if key not in self._readers:
            self._readers[key] = BatchReader(self.path, backend=backend, threads=threads)
        return self._readers[key].read(ids, out=out)

    @cached_property
    def index(self) -> pd.DataFrame:
        """One row per stored tile: scene, row, col, verdict, split, weight, source, counts."""
        tile_px = self.tile_size**2
        valid = self.column("valid_px")
        cloudy = self.column("cloudy_px")
        verdicts = list(self.decisions.verdicts)
        frame = pd.DataFrame(
            {
                "scene": pd.Categorical.from_codes(self.column("scene"), list(self.scenes)),
                "row": self.column("row"),
                "col": self.column("col"),
                "verdict": pd.Categorical.from_codes(self._verdict, verdicts),
                "split": pd.Categorical.from_codes(self._split, list(SPLITS)),
                "weight": self._weight,
                "source": pd.Categorical.from_codes(self.sources, list(SOURCES)),
                "valid_fraction": valid / tile_px,
                "cloud_fraction": np.where(cloudy < 0, np.nan, cloudy / np.maximum(valid, 1)),
            }
        )
        counts = self.column("class_counts")
        for class_id in range(counts.shape[1]):
            frame[f"class_{class_id}"] = counts[:, class_id]
        return frame
