"""A dataset's class table: from a catalog, a file in one of the common formats, or the masks.

``--classes`` accepts a catalog table name, geotiler's YAML table (``nodata`` + ``classes`` list),
JSON or YAML ``{id: name}``, ``{id: {name, color}}``, and either of those under a ``classes`` key
(with ``nodata`` beside it when the table says which id means no label). Without a table, the
masks' own colour table and category names are used, else the values present in the masks.
Id 0 is nodata unless the table lists 0 as a class or says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from geotiler.catalog import Catalog, ClassInfo, ClassTable, describe_validation_error
from geotiler.errors import CatalogError, InputError
from geotiler.grid import Grid
from geotiler.io import block_layout, open_raster, read_class_table

# Colours for classes named only by their value (tab10-like, cycled).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
SAMPLED_MASKS = 64
"""Masks whose values are read to find the classes when no table is given."""


def load_class_table(spec: str, catalog: Catalog | None) -> ClassTable:
    """A class table from a file (see the module docstring), else by name from the catalog."""
    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        if not path.is_file():
            raise CatalogError(f"{path}: class table file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise CatalogError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from exc
        return parse_class_table(raw, name=path.stem, where=str(path))
    if catalog is None:
        raise CatalogError(f"{spec}: not a class table file, and no catalog to look it up in")
    return catalog.class_table(spec)


def parse_class_table(raw: Any, *, name: str, where: str) -> ClassTable:
    """A :class:`ClassTable` from any of the formats in the module docstring."""
    if not isinstance(raw, dict) or not raw:
        raise CatalogError(f"{where}: a class table is a mapping (id -> name, or nodata + classes)")
    if isinstance(raw.get("classes"), list):
        table: dict[str, Any] = {"name": name, **{k: v for k, v in raw.items() if k != "bands"}}
        table = {k: v for k, v in table.items() if k in ClassTable.model_fields}
    else:
        mapping = raw["classes"] if isinstance(raw.get("classes"), dict) else raw
        classes = [
            _class_entry(key, value, where, n) for n, (key, value) in enumerate(mapping.items())
        ]
        ids = [c["id"] for c in classes]
        default = None if 0 in ids else 0
        nodata = raw.get("nodata", default) if mapping is not raw else default
        table = {"name": name, "nodata": nodata, "classes": classes}
    try:
        return ClassTable.model_validate(table)
    except ValidationError as exc:
        raise CatalogError(f"{where}: {describe_validation_error(exc)}") from exc


def _class_entry(key: Any, value: Any, where: str, n: int) -> dict[str, Any]:
    try:
        class_id = int(key)
    except (TypeError, ValueError):
        raise CatalogError(f"{where}: class id {key!r} is not a number") from None
    if isinstance(value, str):
        return {"id": class_id, "name": value, "color": PALETTE[n % len(PALETTE)]}
    if isinstance(value, dict):
        entry = {"id": class_id, "color": PALETTE[n % len(PALETTE)], **value}
        color = entry.get("color")
        if isinstance(color, list | tuple) and len(color) >= 3:
            entry["color"] = "#{:02x}{:02x}{:02x}".format(*(int(c) for c in color[:3]))
        return entry
    raise CatalogError(f"{where}: class {key}: give a name or {{name, color}}, got {value!r}")


def classes_of_masks(masks: Sequence[str | PathLike[str]], nodata: int | None) -> ClassTable:
    """The masks' own class table (colour table and names), else one from their values."""
    first = masks[0]
    with open_raster(first) as dataset:
        if dataset.count != 1:
            raise InputError(
                f"{first}: an RGB-coded mask needs a class table with the class colours; pass "
                "--classes classes.json ({id: {name, color}})"
            )
        table = read_class_table(dataset)
        mask_nodata = None if dataset.nodata is None else int(dataset.nodata)
    if table is not None:
        return with_nodata(table, nodata) if nodata is not None else table
    return classes_from_values(masks, nodata if nodata is not None else mask_nodata)


def classes_of_mask(mask: str | PathLike[str], nodata: int | None) -> ClassTable:
    """The class table of one mask (see :func:`classes_of_masks`)."""
    return classes_of_masks([mask], nodata)


def classes_from_values(
    masks: Sequence[str | PathLike[str]] | str | PathLike[str], nodata: int | None
) -> ClassTable:
    """A table naming each value present in the masks ``class N`` (streamed passes).

    Of many masks, an even sample of ``SAMPLED_MASKS`` is read; a value found later while tiling
    is reported then.
    """
    paths = [masks] if isinstance(masks, str | PathLike) else list(masks)
    if len(paths) > SAMPLED_MASKS:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, SAMPLED_MASKS).astype(int)]
    counts = np.zeros(256, dtype=np.int64)
    for mask in paths:
        counts += _value_counts(mask)
    ids = [int(v) for v in np.flatnonzero(counts) if v != nodata]
    if not ids:
        raise InputError(f"{paths[0]}: the mask holds only nodata ({nodata})")
    classes = tuple(
        ClassInfo(id=v, name=f"class {v}", color=PALETTE[n % len(PALETTE)])
        for n, v in enumerate(ids)
    )
    return ClassTable(name=Path(paths[0]).stem, nodata=nodata, classes=classes)


def _value_counts(mask: str | PathLike[str]) -> np.ndarray:
    counts = np.zeros(256, dtype=np.int64)
    with open_raster(mask) as dataset:
        if not np.issubdtype(np.dtype(dataset.dtypes[0]), np.integer):
            raise InputError(
                f"{mask}: a mask needs integer class ids, got {dataset.dtypes[0]} pixels; "
                "convert it to integers (e.g. gdal_translate -ot Byte)"
            )
        grid = Grid.from_dataset(dataset)
        rows = block_layout(dataset).aligned_rows(1024)
        for window in grid.row_bands(rows):
            values = dataset.read(1, window=window)
            if values.min(initial=0) < 0 or values.max(initial=0) > 255:
                raise InputError(f"{mask}: mask values must be 0..255 to tile, got {values.max()}")
            counts += np.bincount(values.ravel(), minlength=256)[:256]
    return counts


def with_nodata(table: ClassTable, nodata: int) -> ClassTable:
    """``table`` with another nodata value (which must not be a class id)."""
    try:
        return ClassTable.model_validate({**table.model_dump(), "nodata": nodata})
    except ValidationError as exc:
        raise InputError(f"--nodata {nodata}: {describe_validation_error(exc)}") from exc


def resolve_classes(
    spec: str | None,
    nodata: int | None,
    *,
    catalog: Catalog | None,
    dataset_table: ClassTable | None,
    masks: Sequence[Path],
) -> ClassTable:
    """The class table a tile run uses: ``--classes``, the dataset's, else the masks' own."""
    if spec:
        table = load_class_table(spec, catalog)
    elif dataset_table is not None:
        table = dataset_table
    else:
        table = classes_of_masks(masks, nodata)
    if nodata is not None and table.nodata != nodata:
        table = with_nodata(table, nodata)
    return table
