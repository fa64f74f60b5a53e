"""The data catalog: class tables, datasets and where each stage writes its output.

``data_catalog.yaml`` is found, in order, from ``--catalog``, ``$GEOTILER_CATALOG``, the first
``data_catalog.yaml`` in the working directory or one of its parents, and finally the copy packaged
with geotiler. Relative paths resolve against the catalog file's folder (against the working
directory for the packaged copy). Validation errors name the file and the offending key.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geotiler.errors import CatalogError
from geotiler.outputs import catalog_paths_problem

CATALOG_FILENAME = "data_catalog.yaml"
Stage = Literal["synth", "rescale", "tile", "train", "predict", "evaluate", "report"]
RGBA = tuple[int, int, int, int]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassInfo(_Strict):
    """One class of a class table."""

    id: int = Field(ge=0, le=255)
    name: str
    color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$", description="#rrggbb")
    tags: tuple[str, ...] = ()
    weight: float = Field(default=1.0, gt=0, description="weight for weighted-mode rescaling")

    @property
    def rgba(self) -> RGBA:
        value = self.color.lstrip("#")
        return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16), 255


class ClassTable(_Strict):
    """The classes of a mask; ``nodata`` is the id of pixels that carry no label (or None)."""

    name: str
    description: str = ""
    nodata: int | None = Field(default=0, ge=0, le=255)
    classes: tuple[ClassInfo, ...]

    @model_validator(mode="after")
    def _unique(self) -> ClassTable:
        ids = [c.id for c in self.classes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"class ids repeat: {sorted(ids)}")
        if self.nodata is not None and self.nodata in ids:
            raise ValueError(f"nodata id {self.nodata} is also a class id")
        return self

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.classes]

    @property
    def names(self) -> dict[int, str]:
        return {c.id: c.name for c in self.classes}

    def with_tag(self, tag: str) -> list[int]:
        """Ids of the classes tagged ``tag`` (e.g. ``water``)."""
        return [c.id for c in self.classes if tag in c.tags]

    @property
    def weights(self) -> dict[int, float]:
        return {c.id: c.weight for c in self.classes}

    def colormap(self) -> dict[int, RGBA]:
        """A GDAL colour map: the class colours, nodata transparent black."""
        cmap = {c.id: c.rgba for c in self.classes}
        if self.nodata is not None:
            cmap[self.nodata] = (0, 0, 0, 0)
        return cmap

    def category_names(self) -> list[str]:
        """Names indexed by pixel value from 0 to the largest id, as GDAL's category names."""
        top = max([*self.ids, self.nodata or 0])
        names = [""] * (top + 1)
        if self.nodata is not None:
            names[self.nodata] = "nodata"
        for c in self.classes:
            names[c.id] = c.name
        return names

    def resolve(self, key: str | int) -> int:
        """A class id from an id or a case-insensitive name."""
        if isinstance(key, int) or str(key).isdigit():
            value = int(key)
            if value in self.ids:
                return value
        else:
            for c in self.classes:
                if c.name.lower() == str(key).strip().lower():
                    return c.id
        raise CatalogError(
            f"class table {self.name!r} has no class {key!r}; known: "
            + ", ".join(f"{c.id}={c.name}" for c in self.classes)
        )


class SynthSpec(_Strict):
    """How the generated demo dataset is made (see :mod:`geotiler.synthetic`)."""

    seed: int = 0
    scene_px: int = Field(default=1024, ge=64)
    factor: int = Field(default=10, ge=1)
    cloud_fraction: float = Field(default=0.06, ge=0, lt=1)
    mask_layout: Literal["tiled", "strip"] = "tiled"


class Dataset(_Strict):
    """A dataset: scenes per season on one grid, a mask, its class table, optional cloud masks."""

    description: str = ""
    class_table: str
    data_dir: str | None = Field(default=None, description="folder the file names are relative to")
    scenes: dict[str, str] = Field(default_factory=dict, description="season -> scene file")
    mask: str | None = None
    cloud_masks: dict[str, str] = Field(default_factory=dict, description="season -> cloud mask")
    bands: tuple[str, ...] = ()
    crs: str | None = Field(default=None, description="expected CRS, checked when given")
    resolution_m: float | None = None
    shape: tuple[int, int] | None = Field(default=None, description="expected scene (rows, cols)")
    origin: tuple[float, float] | None = Field(default=None, description="upper-left (x, y)")
    mask_resolution_m: float | None = None
    images_glob: str | None = Field(default=None, description="many-scene layouts: image files")
    masks_glob: str | None = Field(default=None, description="many-scene layouts: mask files")
    synthetic: SynthSpec | None = Field(default=None, description="generated on first use")

    @field_validator("scenes", "cloud_masks")
    @classmethod
    def _non_empty_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for season, path in value.items():
            if not path:
                raise ValueError(f"season {season!r} has an empty path")
        return value


class CatalogModel(_Strict):
    version: int = 1
    default_dataset: str
    data_dir: str = "data"
    work_dir: str = Field(default="work/{dataset}", description="pattern for stage outputs")
    outputs: dict[str, str] = Field(default_factory=dict, description="stage -> name in work_dir")
    absolute_outputs: bool = Field(
        default=False, description="allow work_dir and outputs outside the catalog's folder"
    )
    class_tables: dict[str, ClassTable]
    datasets: dict[str, Dataset]

    @model_validator(mode="before")
    @classmethod
    def _name_tables(cls, data: object) -> object:
        # Table names are the mapping keys; copy them in so a table knows its own name.
        if isinstance(data, dict) and isinstance(data.get("class_tables"), dict):
            tables = {}
            for key, table in data["class_tables"].items():
                tables[key] = {"name": key, **table} if isinstance(table, dict) else table
            data = {**data, "class_tables": tables}
        return data

    @model_validator(mode="after")
    def _references(self) -> CatalogModel:
        if self.default_dataset not in self.datasets:
            raise ValueError(
                f"default_dataset {self.default_dataset!r} is not among the datasets "
                f"({', '.join(self.datasets)})"
            )
        for name, dataset in self.datasets.items():
            if dataset.class_table not in self.class_tables:
                raise ValueError(
                    f"datasets.{name}.class_table: unknown table {dataset.class_table!r} "
                    f"(known: {', '.join(self.class_tables)})"
                )
        unknown = sorted(set(self.outputs) - set(DEFAULT_OUTPUTS))
        if unknown:
            raise ValueError(
                f"outputs.{unknown[0]}: unknown stage (stages: {', '.join(DEFAULT_OUTPUTS)})"
            )
        problem = catalog_paths_problem(
            self.work_dir, {**DEFAULT_OUTPUTS, **self.outputs}, allow_outside=self.absolute_outputs
        )
        if problem:
            raise ValueError(problem)
        return self


DEFAULT_OUTPUTS: dict[str, str] = {
    "synth": "data",
    "rescale": "mask.tif",
    "tile": "tiles.zarr",
    "train": "run",
    "predict": "landcover.tif",
    "evaluate": "report",
    "report": "report",
}


class Catalog:
    """A loaded, validated catalog and the folder its relative paths resolve against."""

    def __init__(self, model: CatalogModel, path: Path | None, root: Path) -> None:
        self.model = model
        self.path = path
        self.root = root

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Catalog:
        """Load and validate a catalog; ``None`` looks it up as the module docstring says."""
        found, packaged = _locate(path)
        where = str(found)
        try:
            raw = yaml.safe_load(found.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CatalogError(f"{where}: cannot read the catalog ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise CatalogError(f"{where}: not valid YAML ({_first_line(exc)})") from exc
        if not isinstance(raw, dict):
            raise CatalogError(
                f"{where}: a catalog must be a mapping with class_tables and datasets"
            )
        try:
            model = CatalogModel.model_validate(raw)
        except ValidationError as exc:
            raise CatalogError(f"{where}: {describe_validation_error(exc)}") from exc
        root = Path.cwd() if packaged else found.parent
        return cls(model, None if packaged else found, root)

    @property
    def default_dataset(self) -> str:
        return self.model.default_dataset

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "the packaged data_catalog.yaml"

    def dataset(self, name: str | None = None) -> Dataset:
        name = name or self.default_dataset
        try:
            return self.model.datasets[name]
        except KeyError:
            raise CatalogError(
                f"{self.where}: no dataset {name!r}; known: {', '.join(self.model.datasets)}"
            ) from None

    def class_table(self, name: str) -> ClassTable:
        try:
            return self.model.class_tables[name]
        except KeyError:
            raise CatalogError(
                f"{self.where}: no class table {name!r}; "
                f"known: {', '.join(self.model.class_tables)}"
            ) from None

    def dataset_classes(self, name: str | None = None) -> ClassTable:
        return self.class_table(self.dataset(name).class_table)

    def data_dir(self, name: str | None = None) -> Path:
        """The folder a dataset's file names are relative to (``$GEOTILER_DATA_DIR`` wins)."""
        name = name or self.default_dataset
        dataset = self.dataset(name)
        if dataset.synthetic is not None and dataset.data_dir is None:
            return self.work_dir(name) / self.output_name("synth")
        env = os.environ.get("GEOTILER_DATA_DIR")
        base = Path(env) if env else self._resolve(self.model.data_dir)
        return base / dataset.data_dir if dataset.data_dir else base

    def work_dir(self, name: str | None = None) -> Path:
        name = name or self.default_dataset
        self.dataset(name)
        return self._resolve(self.model.work_dir.format(dataset=name))

    def output_name(self, stage: str) -> str:
        return self.model.outputs.get(stage, DEFAULT_OUTPUTS[stage])

    def output_path(self, stage: Stage, name: str | None = None) -> Path:
        """Where ``stage`` writes for dataset ``name`` (the default dataset when None).

        A dataset of many scenes gets a folder of maps from predict (``landcover/``).
        """
        path = self.work_dir(name) / self.output_name(stage)
        if stage == "predict" and self.dataset(name).images_glob:
            return path.with_suffix("")
        return path

    def scene_paths(self, name: str | None = None) -> dict[str, Path]:
        dataset = self.dataset(name)
        base = self.data_dir(name)
        return {season: _join(base, path) for season, path in dataset.scenes.items()}

    def mask_path(self, name: str | None = None) -> Path | None:
        dataset = self.dataset(name)
        return _join(self.data_dir(name), dataset.mask) if dataset.mask else None

    def cloud_mask_paths(self, name: str | None = None) -> dict[str, Path]:
        dataset = self.dataset(name)
        base = self.data_dir(name)
        return {season: _join(base, path) for season, path in dataset.cloud_masks.items()}

    @cached_property
    def datasets(self) -> list[str]:
        return list(self.model.datasets)

    def _resolve(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else self.root / path


OBJECT_STORES = {"s3://": "/vsis3/", "gs://": "/vsigs/", "az://": "/vsiaz/"}
"""Object-store URLs in the catalog, as the GDAL virtual paths that survive being a Path."""


def _join(base: Path, value: str) -> Path:
    if value.startswith("/vsi"):
        return Path(value)  # GDAL's virtual file systems pass through
    for scheme, vsi in OBJECT_STORES.items():
        if value.startswith(scheme):
            return Path(vsi + value[len(scheme) :])
    if "://" in value:
        # A Path would fold the URL's "//", and rasterio could no longer open it.
        raise CatalogError(
            f"{value}: URLs other than s3://, gs:// and az:// are not supported in the catalog; "
            "download the file or give a local path"
        )
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def _locate(path: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    if path is not None:
        found = Path(path)
        if not found.is_file():
            raise CatalogError(f"{found}: catalog file not found")
        return found, False
    env = os.environ.get("GEOTILER_CATALOG")
    if env:
        return _locate(env)
    for folder in (Path.cwd(), *Path.cwd().parents):
        candidate = folder / CATALOG_FILENAME
        if candidate.is_file():
            return candidate, False
    packaged = resources.files("geotiler") / "data" / CATALOG_FILENAME
    return Path(str(packaged)), True


def describe_validation_error(
    exc: ValidationError, *, root: str = "", known: Iterable[str] = ()
) -> str:
    """The most helpful pydantic error as ``key.path: message`` (the rest counted).

    An unknown key comes first, named with its closest known key: a misspelt required key also
    reports the real one as missing, and "unknown key 'clas_table' (typo? did you mean
    'class_table'?)" says what to fix where "required key is missing" does not. Pydantic's own
    wording ("Value error, ...", "(top level)") never reaches the user. ``root`` prefixes the key
    (a pipeline's stage name), or stands alone for an error of the whole model. ``known`` are the
    model's own keys, for a hint when the misspelt key is an optional one (nothing is missing).
    """
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    *parent, last = [str(part) for part in first["loc"]] or [""]
    if first["type"] == "extra_forbidden":
        missing = [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and e["loc"]]
        close = difflib.get_close_matches(last, missing, n=1) or (
            difflib.get_close_matches(last, list(known), n=1) if not parent else []
        )
        hint = f" did you mean {close[0]!r}?" if close else ""
        key, message = (
            ".".join([root, *parent] if root else parent),
            f"unknown key {last!r} (typo?{hint})",
        )
        if close:  # the missing key is this typo's consequence, not another problem
            errors = [
                e for e in errors if not (e["type"] == "missing" and e["loc"][-1] == close[0])
            ]
    else:
        key = ".".join(part for part in (root, *parent, last) if part)
        message = _pydantic_message(first)
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{key}: {message}{more}" if key else f"{message}{more}"


def _pydantic_message(error: Any) -> str:
    if error["type"] == "missing":
        return "required key is missing"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
