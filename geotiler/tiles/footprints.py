"""Tile footprints as polygons: areas of interest (GeoJSON etc.) and the index for QGIS.

Polygons are read with geopandas and reprojected to the scene CRS; a tile "touches" an area when
its footprint intersects it. The exported index (GeoPackage or GeoParquet) holds one square per
stored tile with its scene, split, verdict, weight and class shares, in columns with plain names
(``share_<id>``, ``class_<id>``) that SQL, QGIS expressions and pandas take as they are. The
lookup table from class id to name and colour is the GeoPackage's ``classes`` layer (a table
without geometry), or the JSON under ``geotiler:classes`` in the GeoParquet file's metadata.
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


CLASSES_LAYER = "classes"
PARQUET_CLASSES_KEY = b"geotiler:classes"


def check_index_path(path: str | PathLike[str]) -> Path:
    """Refuse an index name geotiler cannot write, before the work that precedes it.

    Raises:
        InputError: neither ``.gpkg`` nor ``.parquet``, or ``.parquet`` without pyarrow.
        OutputExistsError: a file there that is not an index geotiler wrote.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".gpkg", ".parquet"):
        raise InputError(f"{target}: index must end in .gpkg (GeoPackage) or .parquet (GeoParquet)")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError(
                f"{target}: a GeoParquet index needs pyarrow: pip install 'geotiler[parquet]' "
                "(or write a .gpkg)"
            ) from None
    from geotiler.outputs import check_output

    # As write_index will judge it: a user's own file there is refused now, not after the work.
    check_output(target, "index", overwrite=True)
    return target


def write_index(
    frame: Any,
    bounds: np.ndarray,
    crs: Any,
    path: str | PathLike[str],
    classes: list[dict[str, Any]] | None = None,
) -> Path:
    """Write the tile index with square footprints to ``.gpkg`` or ``.parquet``.

    ``classes`` (``{"id", "name", "color"}`` rows) is written as the lookup table.
    """
    import geopandas as gpd
    import shapely

    from geotiler.io import atomic_output

    target = check_index_path(path)
    geometry = shapely.box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3])
    table = gpd.GeoDataFrame(frame.copy(), geometry=geometry, crs=crs)
    for column in ("scene", "verdict", "split"):
        table[column] = table[column].astype(str)
    # Replaces an index geotiler wrote (re-running refreshes it), never any other file.
    with atomic_output(target, overwrite=True, kind="index") as temporary:
        if target.suffix.lower() == ".parquet":
            _write_parquet(table, temporary, classes or [])
        else:
            table.to_file(temporary, layer="tiles", driver="GPKG")
            if classes:
                import pandas as pd
                import pyogrio

                lookup = pd.DataFrame(classes, columns=["id", "name", "color"])
                pyogrio.write_dataframe(lookup, temporary, layer=CLASSES_LAYER, driver="GPKG")
    return target


def _write_parquet(table: Any, path: Path, classes: list[dict[str, Any]]) -> None:
    import json

    import pyarrow.parquet as pq

    table.to_parquet(path)
    if not classes:
        return
    written = pq.read_table(path)
    metadata = {**(written.schema.metadata or {}), PARQUET_CLASSES_KEY: json.dumps(classes)}
    pq.write_table(written.replace_schema_metadata(metadata), path)


def read_index_classes(path: str | PathLike[str]) -> dict[int, str]:
    """The class id -> name lookup table an index holds (empty when it holds none)."""
    where = Path(path)
    if where.suffix.lower() == ".parquet":
        import json

        import pyarrow.parquet as pq

        metadata = pq.read_schema(where).metadata or {}
        rows = json.loads(metadata.get(PARQUET_CLASSES_KEY, b"[]"))
    else:
        import pyogrio

        if CLASSES_LAYER not in {str(name) for name, _ in pyogrio.list_layers(where)}:
            return {}
        rows = pyogrio.read_dataframe(where, layer=CLASSES_LAYER).to_dict("records")
    return {int(row["id"]): str(row["name"]) for row in rows}
