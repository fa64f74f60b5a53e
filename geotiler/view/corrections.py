"""Corrections drawn on the map: polygons with a class, kept in a GeoPackage layer.

Every edit rewrites the layer (to a temporary name, then renamed), so a reload or a crash never
loses a saved polygon and a half-written file never replaces a good one. Undo and redo step
through the states of this session. Columns: ``class_id``, ``author``, ``time`` (ISO 8601, UTC)
and the polygon; the CRS is the scene's (none for a scene shown in pixel coordinates).
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from geotiler.errors import InputError

LAYER = "corrections"
COLUMNS = ("class_id", "author", "time")


@dataclass(frozen=True)
class Correction:
    """One corrected polygon (exterior ring, view coordinates)."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    class_id: int
    author: str
    time: str

    @classmethod
    def now(cls, xs: Any, ys: Any, class_id: int, author: str) -> Correction:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(tuple(map(float, xs)), tuple(map(float, ys)), int(class_id), author, stamp)


def read_corrections(path: str | PathLike[str]) -> Any:
    """The corrections layer as a GeoDataFrame (class_id, author, time, geometry).

    Raises:
        InputError: the file is missing, not a GeoPackage or lacks the columns.
    """
    import geopandas as gpd

    where = Path(path)
    if not where.is_file():
        raise InputError(f"{where}: corrections file not found (draw them in `geotiler view`)")
    try:
        frame = gpd.read_file(where, layer=LAYER, engine="pyogrio")
    except Exception as exc:  # pyogrio raises its own DataSourceError, DataLayerError...
        raise InputError(
            f"{where}: not a corrections GeoPackage with a '{LAYER}' layer ({exc})"
        ) from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{where}: the '{LAYER}' layer lacks {', '.join(missing)}")
    return frame


def write_corrections(path: str | PathLike[str], items: list[Correction], crs: Any) -> None:
    """Write ``items`` as the corrections layer of ``path`` atomically (temp file, rename)."""
    import geopandas as gpd
    from shapely.geometry import Polygon

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    frame = gpd.GeoDataFrame(
        {
            "class_id": np.array([c.class_id for c in items], dtype=np.int32),
            "author": [c.author for c in items],
            "time": [c.time for c in items],
        },
        geometry=[Polygon(list(zip(c.xs, c.ys, strict=True))) for c in items],
        crs=crs,
    )
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp.gpkg")
    try:
        with warnings.catch_warnings():
            # A scene shown in pixel coordinates has no CRS, and that is what is meant.
            warnings.filterwarnings("ignore", message=".crs. was not provided")
            frame.to_file(
                temporary, layer=LAYER, driver="GPKG", engine="pyogrio", geometry_type="Polygon"
            )
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


class CorrectionLog:
    """The corrections of one file, with undo and redo; every change is saved at once."""

    def __init__(self, path: str | PathLike[str], crs: Any) -> None:
        self.path = Path(path)
        self.crs = crs
        self._lock = threading.Lock()
        self.items: list[Correction] = self._load() if self.path.is_file() else []
        self._undo: list[list[Correction]] = []
        self._redo: list[list[Correction]] = []

    def _load(self) -> list[Correction]:
        frame = read_corrections(self.path)
        items = []
        for row in frame.itertuples():
            ring = row.geometry.exterior.coords if row.geometry is not None else []
            coords = list(ring)[:-1]
            if len(coords) < 3:
                continue
            xs, ys = zip(*[(p[0], p[1]) for p in coords], strict=True)
            items.append(Correction(xs, ys, int(row.class_id), str(row.author), str(row.time)))
        return items

    def replace(self, items: list[Correction]) -> None:
        """Make ``items`` the current corrections (undoable) and save them."""
        with self._lock:
            if items == self.items:
                return
            self._undo.append(self.items)
            self._redo.clear()
            self.items = list(items)
            self._save()

    def add(self, item: Correction) -> None:
        self.replace([*self.items, item])

    def undo(self) -> bool:
        """Go back one edit; False when there is none."""
        with self._lock:
            if not self._undo:
                return False
            self._redo.append(self.items)
            self.items = self._undo.pop()
            self._save()
            return True

    def redo(self) -> bool:
        """Redo the last undone edit; False when there is none."""
        with self._lock:
            if not self._redo:
                return False
            self._undo.append(self.items)
            self.items = self._redo.pop()
            self._save()
            return True

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def _save(self) -> None:
        write_corrections(self.path, self.items, self.crs)
