"""Raster I/O at the edges: opening with clear errors, atomic outputs, class metadata.

Everything that writes a result goes through :func:`atomic_output`: the result is written under a
temporary name beside the target and moved into place only when complete, so an interrupted run
never leaves a file that looks finished. Class rasters carry a colour map, the class names as GDAL
category names (in the ``.aux.xml`` sidecar GDAL and QGIS read) and a ``GEOTILER_CLASSES`` tag.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from geotiler import limits, outputs
from geotiler.catalog import ClassInfo, ClassTable
from geotiler.creation_options import with_creation_options
from geotiler.errors import InputError, RasterError
from geotiler.locks import remove_path
from geotiler.outputs import Inputs, Kind

log = logging.getLogger(__name__)

CLASSES_TAG = "GEOTILER_CLASSES"
PathLike = str | os.PathLike[str]


def open_raster(path: PathLike) -> Any:
    """Open a raster for reading; missing, corrupt or non-raster files raise RasterError."""
    name = os.fspath(path)
    is_remote = "://" in name or name.startswith("/vsi")
    if not is_remote and not Path(name).exists():
        raise RasterError(f"{name}: file not found")
    if not is_remote and Path(name).is_dir():
        raise RasterError(f"{name}: is a folder, not a raster file")
    try:
        with warnings.catch_warnings():
            # Chips without georeference are welcome: they get a plain pixel grid.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(name)
    except RasterioIOError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "unreadable"
        if "not recognized as" in reason or "not a supported file format" in reason:
            reason = "not a raster GDAL can read (corrupt, truncated or another kind of file)"
        raise RasterError(f"{name}: {reason}") from exc
    limits.check_declared_size(dataset, name)
    return dataset


@dataclass(frozen=True)
class BlockLayout:
    """How a band is stored: its block shape and whether it is organised in strips."""

    block_rows: int
    block_cols: int
    striped: bool

    def aligned_rows(self, target_rows: int) -> int:
        """A band height near ``target_rows`` that is a whole number of blocks."""
        blocks = max(1, round(target_rows / self.block_rows))
        return blocks * self.block_rows


def block_layout(dataset: Any) -> BlockLayout:
    block_rows, block_cols = dataset.block_shapes[0]
    return BlockLayout(block_rows, block_cols, striped=block_cols == dataset.width)


def geotiff_profile(
    *,
    dtype: str,
    count: int = 1,
    nodata: float | None = None,
    block_px: int = 512,
    compress: str = "deflate",
) -> dict[str, Any]:
    """Creation options for a tiled, compressed GeoTIFF (BigTIFF when needed)."""
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "dtype": dtype,
        "count": count,
        "tiled": True,
        "blockxsize": block_px,
        "blockysize": block_px,
        "compress": compress,
        "bigtiff": "IF_SAFER",
        "num_threads": "ALL_CPUS",
    }
    if compress in ("deflate", "lzw", "zstd"):
        profile["predictor"] = 2 if dtype not in ("float32", "float64") else 3
        if dtype in ("uint8", "int8"):
            profile["predictor"] = 1
    if nodata is not None:
        profile["nodata"] = nodata
    return profile


def check_output(
    path: PathLike, *, overwrite: bool, kind: Kind | None = None, inputs: Inputs = ()
) -> Path:
    """Refuse an output geotiler may not write (see :func:`geotiler.outputs.check_output`)."""
    target = outputs.check_output(path, kind or kind_of(path), overwrite=overwrite, inputs=inputs)
    parent = target.parent if str(target.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise RasterError(f"{target}: cannot write into {parent} (permission denied)")
    return target


def kind_of(path: PathLike) -> Kind:
    """The output kind a file name suggests (a GeoTIFF unless it ends in .pt or .onnx)."""
    suffix = Path(path).suffix.lower()
    return "checkpoint" if suffix in (".pt", ".pth") else "onnx" if suffix == ".onnx" else "geotiff"


@contextlib.contextmanager
def atomic_output(
    path: PathLike, *, overwrite: bool = False, kind: Kind | None = None, inputs: Inputs = ()
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it (and its sidecars) into place on success.

    The output is claimed first (:func:`geotiler.outputs.claim`: checked, locked against other
    writers, dead writers' leftovers swept). On any exception the temporary output is removed and
    ``path`` is left as it was.
    """
    with outputs.claim(path, kind or kind_of(path), overwrite=overwrite, inputs=inputs) as target:
        temporary = target.with_name(
            f".{target.name}.partial-{uuid.uuid4().hex[:8]}{target.suffix}"
        )
        try:
            yield temporary
        except BaseException:
            remove_path(temporary)
            for sidecar in _sidecars(temporary):
                remove_path(sidecar)
            raise
        _move_into_place(temporary, target)


def _move_into_place(temporary: Path, target: Path) -> None:
    for sidecar in _sidecars(target):
        remove_path(sidecar)
    for sidecar in _sidecars(temporary):
        os.replace(sidecar, target.with_name(target.name + sidecar.name[len(temporary.name) :]))
    os.replace(temporary, target)


def _sidecars(path: Path) -> list[Path]:
    return [p for p in (path.with_name(path.name + ".aux.xml"),) if p.exists()]


def write_class_metadata(path: PathLike, classes: ClassTable, *, band: int = 1) -> None:
    """Give a written class raster its colour map, category names and class table tag.

    Inside the GeoTIFF (what any GDAL reader sees with no sidecar): the colour map, the
    ``GEOTILER_CLASSES`` tag and one band metadata item ``CLASS_<id>=<name>`` per class, in
    GDAL's metadata tag. GDAL keeps a GeoTIFF's category names (QGIS's legend) only in the
    ``.aux.xml`` sidecar, and a raster attribute table likewise; rasterio cannot write a RAT, so
    the category names go to the sidecar, merged into one that is already there.
    """
    with rasterio.open(path, "r+") as dataset:
        dataset.write_colormap(band, _full_colormap(classes))
        dataset.update_tags(**{CLASSES_TAG: json.dumps(classes.model_dump(mode="json"))})
        dataset.update_tags(band, **class_name_items(classes.names))
        dataset.set_band_description(band, f"classes: {classes.name}")
    _write_category_names(Path(path), classes.category_names(), band=band)


def class_name_items(names: Mapping[int, str]) -> dict[str, str]:
    """``{1: "Forest"}`` -> ``{"CLASS_1": "Forest"}``: band metadata items GDAL keeps inside."""
    return {f"CLASS_{value}": name for value, name in sorted(names.items())}


def _full_colormap(classes: ClassTable) -> dict[int, tuple[int, int, int, int]]:
    cmap = classes.colormap()
    return {value: cmap.get(value, (0, 0, 0, 0)) for value in range(256)}


def _write_category_names(path: Path, names: list[str], *, band: int) -> None:
    """Category names into the PAM sidecar (QGIS shows them as the legend), keeping what else an
    existing sidecar holds (statistics, other bands, metadata GDAL put there)."""
    import xml.etree.ElementTree as ElementTree

    sidecar = path.with_name(path.name + ".aux.xml")
    root = _read_sidecar(sidecar)
    if root is None:
        root = ElementTree.Element("PAMDataset")
    element = next((e for e in root.findall("PAMRasterBand") if e.get("band") == str(band)), None)
    if element is None:
        element = ElementTree.SubElement(root, "PAMRasterBand", band=str(band))
    for old in element.findall("CategoryNames"):
        element.remove(old)
    categories = ElementTree.SubElement(element, "CategoryNames")
    for name in names:
        ElementTree.SubElement(categories, "Category").text = name
    text = ElementTree.tostring(root, encoding="unicode")
    temporary = sidecar.with_name(f".{sidecar.name}.partial-{uuid.uuid4().hex[:8]}")
    temporary.write_text(text + "\n", encoding="utf-8")
    os.replace(temporary, sidecar)


def _read_sidecar(sidecar: Path) -> Any:
    """The sidecar's XML root, or None when there is none (or it is not XML GDAL could read)."""
    import xml.etree.ElementTree as ElementTree

    if not sidecar.is_file():
        return None
    try:
        root = ElementTree.parse(sidecar).getroot()
    except ElementTree.ParseError:
        log.warning("%s: not readable XML; writing the category names afresh", sidecar)
        return None
    return root if root.tag == "PAMDataset" else None


def read_class_table(dataset: Any, *, name: str | None = None) -> ClassTable | None:
    """The class table a class raster carries: our tag, else its colour map and category names."""
    tag = dataset.tags().get(CLASSES_TAG)
    if tag:
        try:
            return ClassTable.model_validate(json.loads(tag))
        except ValueError:
            log.warning("%s: ignoring an unreadable %s tag", dataset.name, CLASSES_TAG)
    try:
        cmap = dataset.colormap(1)
    except ValueError:
        return None
    names = _read_category_names(Path(dataset.name)) or _band_class_names(dataset)
    nodata = None if dataset.nodata is None else int(dataset.nodata)
    classes = []
    for value, rgba in sorted(cmap.items()):
        # GeoTIFF colour maps keep no alpha, so unused entries read back as opaque black:
        # with category names, the names say which values are classes.
        label = names[value] if value < len(names) else ""
        unused = not label if names else rgba[:3] == (0, 0, 0)
        if value == nodata or unused:
            continue
        colour = "#{:02x}{:02x}{:02x}".format(*rgba[:3])
        classes.append(ClassInfo(id=value, name=label or f"class {value}", color=colour))
    if not classes:
        return None
    return ClassTable(name=name or Path(dataset.name).stem, nodata=nodata, classes=tuple(classes))


def _band_class_names(dataset: Any) -> list[str]:
    """Names from the ``CLASS_<id>`` band items (a copy that lost its sidecar still has them)."""
    found = {
        int(key[6:]): name
        for key, name in dataset.tags(1).items()
        if key.startswith("CLASS_") and key[6:].isdigit()
    }
    return [found.get(value, "") for value in range(max(found) + 1)] if found else []


def _read_category_names(path: Path) -> list[str]:
    root = _read_sidecar(path.with_name(path.name + ".aux.xml"))
    if root is None:
        return []
    element = root.find("./PAMRasterBand/CategoryNames")
    return [] if element is None else [c.text or "" for c in element.findall("Category")]


def require_single_band_integer(dataset: Any, *, purpose: str) -> None:
    """Refuse multi-band or floating-point rasters where class labels are expected."""
    if dataset.count != 1:
        raise InputError(
            f"{dataset.name}: {purpose} needs a single-band class raster, got {dataset.count} bands"
        )
    dtype = dataset.dtypes[0]
    if not (dtype.startswith("uint") or dtype.startswith("int")):
        raise InputError(
            f"{dataset.name}: {purpose} needs integer class labels, got {dtype} pixels"
        )


def convert_to_cog(
    source: PathLike,
    target: PathLike,
    *,
    overview_resampling: str,
    creation_options: Mapping[str, str] | None = None,
) -> None:
    """Copy a finished GeoTIFF to a Cloud-Optimised GeoTIFF with overviews built by GDAL.

    Class rasters want ``overview_resampling="mode"``; the class metadata sidecar is copied along.
    ``creation_options`` (the COG driver's, e.g. ``{"COMPRESS": "ZSTD"}``) override geotiler's.
    """
    from rasterio.shutil import copy as rio_copy

    with rasterio.open(source) as src:
        # the COG driver spells it YES/NO (GTiff's 2/1 warn "unexpected value" and are ignored)
        integer = src.dtypes[0] not in ("uint8", "int8", "float32", "float64")
        predictor = "YES" if integer else "NO"
    defaults = {
        "compress": "DEFLATE",
        "predictor": predictor,
        "overview_resampling": overview_resampling.upper(),
        "num_threads": "ALL_CPUS",
        "bigtiff": "IF_SAFER",
    }
    # The COG driver carries the colour table, nodata and metadata tags over by itself.
    rio_copy(source, target, driver="COG", **with_creation_options(defaults, creation_options))
    names = _read_category_names(Path(source))
    if names:
        _write_category_names(Path(target), names, band=1)
