"""Tile footprints as polygons: areas of interest (GeoJSON etc.) and the index for QGIS.

Polygons are read with geopandas and reprojected to the scene CRS; a tile "touches" an area when
its footprint intersects it. The exported index (GeoPackage or GeoParquet) holds one square per
stored tile with its scene, split, verdict, weight and class shares.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from geotiler.errors import InputError


def read_area(path: str | PathLike[str], crs: Any) -> Any:
    """The union of the polygons in a vector file, in ``crs`` (a shapely geometry)."""
    import geopandas as gpd

    where = Path(path)
    if not where.is_file():
        raise InputError(f"{where}: area file not found")
    try:
        frame = gpd.read_file(where)
    except Exception as exc:  # pyogrio raises several kinds
        raise InputError(f"{where}: not a vector file geopandas can read ({exc})") from exc
    if frame.empty:
        raise InputError(f"{where}: holds no polygon")
    if frame.crs is None:
        raise InputError(f"{where}: has no CRS; assign one (e.g. EPSG:4326)")
    return frame.to_crs(crs).union_all()


def touching(bounds: np.ndarray, area: Any) -> np.ndarray:
    """Which footprints ``(n, 4)`` (left, bottom, right, top) intersect ``area``."""
    import shapely

    boxes = shapely.box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3])
    return np.asarray(shapely.intersects(boxes, area), dtype=bool)


def write_index(frame: Any, bounds: np.ndarray, crs: Any, path: str | PathLike[str]) -> Path:
    """Write the tile index with square footprints to ``.gpkg`` or ``.parquet``."""
    import geopandas as gpd
    import shapely

    from geotiler.io import atomic_output

    target = Path(path)
    geometry = shapely.box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3])
    table = gpd.GeoDataFrame(frame.copy(), geometry=geometry, crs=crs)
    for column in ("scene", "verdict", "split"):
        table[column] = table[column].astype(str)
    if target.suffix.lower() not in (".gpkg", ".parquet"):
        raise InputError(f"{target}: index must end in .gpkg or .parquet")
    # Replaces an index geotiler wrote (re-running refreshes it), never any other file.
    with atomic_output(target, overwrite=True, kind="index") as temporary:
        if target.suffix.lower() == ".parquet":
            table.to_parquet(temporary)
        else:
            table.to_file(temporary, layer="tiles", driver="GPKG")
    return target
