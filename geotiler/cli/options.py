"""Options every command shares, and resolving the catalog and dataset from them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:  # pydantic and yaml load when a command runs, not for --help
    from geotiler.catalog import Catalog
    from geotiler.config import StageSettings

Settings = TypeVar("Settings", bound="StageSettings")

CatalogOption = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        help="Data catalog (default: $GEOTILER_CATALOG, ./data_catalog.yaml or a parent's).",
        dir_okay=False,
        envvar="GEOTILER_CATALOG",
    ),
]
DatasetOption = Annotated[
    str | None,
    typer.Option("--dataset", "-d", help="Dataset of the catalog (default: its default)."),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Pipeline YAML whose stage section supplies settings.",
        dir_okay=False,
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Dask scheduler: threads (default), synchronous, or tcp://host:port of a cluster.",
    ),
]


def load_catalog(path: Path | None) -> Catalog:
    from geotiler.catalog import Catalog

    return Catalog.load(path)


CreationOption = Annotated[
    list[str] | None,
    typer.Option(
        "--co",
        metavar="NAME=VALUE",
        help="GDAL creation option of the GeoTIFF outputs, as rio and gdal_translate take it "
        "(e.g. --co COMPRESS=LZW --co BLOCKXSIZE=256); overrides geotiler's defaults; with "
        "--cog, the COG driver's options. Repeatable.",
    ),
]


def creation_options(values: list[str] | None) -> dict[str, str] | None:
    """``--co`` values as the dict the writers take (None when none given)."""
    from geotiler.creation_options import parse_creation_options

    return parse_creation_options(values) or None


def load_pipeline(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """:func:`geotiler.config.load_pipeline`, imported when called."""
    from geotiler.config import load_pipeline as load

    return load(path)


def resolve_settings(model: type[Settings], **options: Any) -> Settings:
    """:func:`geotiler.config.resolve_settings`, imported when called."""
    from geotiler.config import resolve_settings as resolve

    return resolve(model, **options)
