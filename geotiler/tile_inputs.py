"""Gathering a tile run's inputs: scenes, mask, cloud masks (catalog and ``--clouds``) and the class
table (a catalog table, a YAML/JSON file, the mask's metadata, or the values present in the mask).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml
from pydantic import ValidationError

from geotiler.catalog import Catalog, ClassInfo, ClassTable, describe_validation_error
from geotiler.errors import CatalogError, InputError
from geotiler.grid import Grid
from geotiler.io import block_layout, open_raster, read_class_table, require_single_band_integer

if TYPE_CHECKING:
    from geotiler.tile import TileInputs

# Colours for classes named only by their value (tab10-like, cycled).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def load_class_table(spec: str, catalog: Catalog | None) -> ClassTable:
    """A class table from a YAML/JSON file, else by name from the catalog."""
    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        if not path.is_file():
            raise CatalogError(f"{path}: class table file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CatalogError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from exc
        if not isinstance(raw, dict):
            raise CatalogError(f"{path}: a class table is a mapping with nodata and classes")
        try:
            return ClassTable.model_validate({"name": path.stem, **raw})
        except ValidationError as exc:
            raise CatalogError(f"{path}: {describe_validation_error(exc)}") from exc
    if catalog is None:
        raise CatalogError(f"{spec}: not a class table file, and no catalog to look it up in")
    return catalog.class_table(spec)


def classes_of_mask(mask: str | PathLike[str], nodata: int | None) -> ClassTable:
    """The mask's own class table (colour table and names), else one from its values."""
    with open_raster(mask) as dataset:
        require_single_band_integer(dataset, purpose="the mask")
        table = read_class_table(dataset)
        mask_nodata = None if dataset.nodata is None else int(dataset.nodata)
    if table is not None:
        return with_nodata(table, nodata) if nodata is not None else table
    return classes_from_values(mask, nodata if nodata is not None else mask_nodata)


def classes_from_values(mask: str | PathLike[str], nodata: int | None) -> ClassTable:
    """A table naming each value present in the mask ``class N`` (one streamed pass)."""
    counts = np.zeros(256, dtype=np.int64)
    with open_raster(mask) as dataset:
        grid = Grid.from_dataset(dataset)
        rows = block_layout(dataset).aligned_rows(1024)
        for window in grid.row_bands(rows):
            values = dataset.read(1, window=window)
            if values.min(initial=0) < 0 or values.max(initial=0) > 255:
                raise InputError(f"{mask}: mask values must be 0..255 to tile, got {values.max()}")
            counts += np.bincount(values.ravel(), minlength=256)[:256]
    ids = [int(v) for v in np.flatnonzero(counts) if v != nodata]
    if not ids:
        raise InputError(f"{mask}: the mask holds only nodata ({nodata})")
    classes = tuple(
        ClassInfo(id=v, name=f"class {v}", color=PALETTE[n % len(PALETTE)])
        for n, v in enumerate(ids)
    )
    return ClassTable(name=Path(mask).stem, nodata=nodata, classes=classes)


def with_nodata(table: ClassTable, nodata: int) -> ClassTable:
    """``table`` with another nodata value (which must not be a class id)."""
    try:
        return ClassTable.model_validate({**table.model_dump(), "nodata": nodata})
    except ValidationError as exc:
        raise InputError(f"--nodata {nodata}: {describe_validation_error(exc)}") from exc


def tile_inputs(
    catalog: Catalog,
    name: str | None,
    scenes: list[Path],
    mask: Path | None,
    classes: str | None,
    nodata: int | None,
    *,
    clouds: Sequence[str] = (),
) -> TileInputs:
    """Scenes, mask, cloud masks, class table and band names from the arguments and catalog.

    Scenes given on the command line need no catalog entry; without them the dataset's scenes
    (generated first for a generated dataset) and the rescaled mask of its work directory are used.
    ``clouds`` are ``--clouds`` values (see :func:`parse_cloud_masks`); they override and extend
    the catalog's cloud masks.
    """
    from geotiler.synthetic import ensure_generated
    from geotiler.tile import TileInputs

    from_catalog = not scenes
    dataset = catalog.dataset(name)
    if from_catalog:
        ensure_generated(catalog, name)
    scene_paths = catalog.scene_paths(name) if from_catalog else {p.stem: p for p in scenes}
    if len(scene_paths) != len(scenes or scene_paths):
        raise InputError("scene file names repeat; give scenes with different names")
    cloud_paths = catalog.cloud_mask_paths(name) if from_catalog else {}
    cloud_paths.update(parse_cloud_masks(clouds, scene_paths))
    mask_path = mask or catalog.output_path("rescale", name)
    if not mask_path.exists():
        raise InputError(
            f"{mask_path}: mask not found; run `geotiler rescale` first to put the mask on the "
            "scene grid, or pass --mask"
        )
    table: ClassTable
    if classes:
        table = load_class_table(classes, catalog)
    elif from_catalog:
        table = catalog.dataset_classes(name)
    else:
        table = classes_of_mask(mask_path, nodata)
    if nodata is not None and table.nodata != nodata:
        table = with_nodata(table, nodata)
    bands = dataset.bands if from_catalog else ()
    return TileInputs(scene_paths, mask_path, table, clouds=cloud_paths, bands=tuple(bands))


def parse_cloud_masks(specs: Sequence[str], scenes: Mapping[str, Path]) -> dict[str, Path]:
    """Scene name -> cloud mask from ``--clouds`` values ``SCENE=FILE``, or a bare ``FILE`` when
    there is exactly one scene.

    Raises:
        InputError: an unknown scene, a scene given twice, a bare file with several scenes, or a
            local cloud mask file that does not exist.
    """
    known = ", ".join(scenes) or "none"
    masks: dict[str, Path] = {}
    for spec in specs:
        scene, sep, file = spec.partition("=")
        if not sep:
            if len(scenes) != 1:
                raise InputError(
                    f"--clouds {spec}: say which scene it is for with SCENE=FILE (scenes: {known})"
                )
            scene, file = next(iter(scenes)), spec
        scene, file = scene.strip(), file.strip()
        if scene not in scenes:
            raise InputError(f"--clouds {spec}: no scene {scene!r}; known scenes: {known}")
        if not file:
            raise InputError(f"--clouds {spec}: no file after '='; use SCENE=cloudmask.tif")
        if scene in masks:
            raise InputError(f"--clouds: scene {scene!r} is given two cloud masks; give one")
        path = Path(file)
        is_remote = "://" in file or file.startswith("/vsi")
        if not is_remote and not path.is_file():
            raise InputError(f"{path}: cloud mask file not found (--clouds {spec})")
        masks[scene] = path
    return masks
