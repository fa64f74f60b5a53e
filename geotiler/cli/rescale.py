"""``geotiler rescale``: a class mask onto the scene grid (thin layer over geotiler.rescale)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from geotiler.cli import app
from geotiler.cli.console import console, err_console, progress_bar
from geotiler.cli.options import (
    CatalogOption,
    ConfigOption,
    CreationOption,
    DatasetOption,
    OverwriteOption,
    QuietOption,
    SchedulerOption,
    creation_options,
    load_catalog,
    load_pipeline,
    resolve_settings,
)
from geotiler.errors import CatalogError

if TYPE_CHECKING:
    from geotiler.catalog import Catalog, ClassTable
    from geotiler.rescale import RescaleResult, RescaleSettings

METHODS_HELP = "near, mode or weighted-mode (mode with per-class weights); default: mode."
MethodName = Literal["near", "mode", "weighted-mode"]


@app.command()
def rescale(
    mask: Annotated[
        Path | None, typer.Argument(help="Class mask to rescale (default: the dataset's mask).")
    ] = None,
    like: Annotated[
        Path | None,
        typer.Option(help="Target grid: this raster's (default: the dataset's first scene)."),
    ] = None,
    factor: Annotated[
        int | None, typer.Option(min=1, help="Target grid: the mask's pixels N times larger.")
    ] = None,
    resolution: Annotated[
        float | None, typer.Option(min=0.0, help="Target grid: this pixel size, mask's CRS.")
    ] = None,
    method: Annotated[MethodName | None, typer.Option(help=METHODS_HELP)] = None,
    class_weight: Annotated[
        list[str] | None,
        typer.Option(
            "--class-weight",
            help="weighted-mode: ID=W or NAME=W, repeatable (default: the class table's).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output GeoTIFF (default: work/<dataset>/mask.tif)."),
    ] = None,
    cog: Annotated[
        bool | None, typer.Option("--cog/--no-cog", help="Write a Cloud Optimized GeoTIFF.")
    ] = None,
    src_nodata: Annotated[
        float | None,
        typer.Option(help="The mask's nodata value, overriding the file's and the class table's."),
    ] = None,
    dst_nodata: Annotated[
        float | None,
        typer.Option(help="The output's nodata value (default: the mask's); no class's value."),
    ] = None,
    co: CreationOption = None,
    memory_mb: Annotated[
        int | None, typer.Option(min=16, help="Source megabytes in flight at once (default: 256).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Dask threads (default: all CPUs).")
    ] = None,
    scheduler: SchedulerOption = None,
    overwrite: OverwriteOption = False,
    dataset: DatasetOption = None,
    config: ConfigOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Rescale a class mask onto a coarser grid (e.g. a 1 m land-cover mask onto 10 m scenes).

    When the mask refines the target grid by an integer factor (same CRS, aligned pixels) blocks
    are computed exactly from the mask, matching GDAL's conventions; otherwise GDAL's warper is
    used. Memory stays bounded whatever the size of the mask.

    \b
    Examples:
      [bold]geotiler rescale[/] (the dataset's mask onto its scene grid)
      [bold]geotiler rescale mask.tif --like scene.tif --method mode -o mask_10m.tif[/]
      [bold]geotiler rescale mask.tif --factor 10 --method weighted-mode --class-weight 11=4[/]
    """
    from geotiler.grid import Grid
    from geotiler.io import check_output
    from geotiler.rescale import RescaleSettings, rescale_with_settings, target_grid

    targets = [flag for flag, v in (("--like", like), ("--factor", factor)) if v is not None]
    targets += ["--resolution"] if resolution is not None else []
    if len(targets) > 1:
        raise typer.BadParameter(f"give one target grid, not {' and '.join(targets)}")
    pipeline = load_pipeline(config)
    name = dataset or pipeline.get("dataset")
    cli = {
        "method": method, "factor": factor, "resolution": resolution, "cog": cog,
        "memory_mb": memory_mb, "workers": workers, "scheduler": scheduler,
        "class_weights": parse_class_weights(class_weight),
        "creation_options": creation_options(co),
        "src_nodata": src_nodata, "dst_nodata": dst_nodata,
    }  # fmt: skip
    settings = resolve_settings(RescaleSettings, stage="rescale", cli=cli, pipeline=pipeline)
    cat = load_catalog(catalog)
    source, table = _source(cat, name, mask, explicit_dataset=name is not None)
    source_grid = Grid.from_raster(source)
    if like is None and settings.factor is None and settings.resolution is None:
        like = _dataset_scene(cat, name)
    target = target_grid(
        source_grid, like=like, factor=settings.factor, resolution=settings.resolution
    )
    out = output or cat.output_path("rescale", name)
    check_output(out, overwrite=overwrite, kind="geotiff", inputs=[source])
    _check_creation_options(source, settings, out)
    with progress_bar("rescaling", source_grid.rows, unit="source rows", quiet=quiet) as advance:
        result = rescale_with_settings(
            source, target, out, settings, classes=table, overwrite=overwrite, progress=advance
        )
    if not quiet:
        for notice in result.notices:
            err_console.print(f"[yellow]note:[/] {notice}", highlight=False, soft_wrap=True)
        print_summary(result)


def parse_class_weights(values: list[str] | None) -> dict[str, float] | None:
    """``["11=4", "Forest=0.5"]`` -> ``{"11": 4.0, "Forest": 0.5}``; BadParameter otherwise."""
    if not values:
        return None
    weights: dict[str, float] = {}
    for value in values:
        key, sep, number = value.rpartition("=")
        try:
            weight = float(number)
        except ValueError:
            weight = float("nan")
        if not sep or not key.strip() or not weight > 0:
            raise typer.BadParameter(
                f"--class-weight wants ID=W or NAME=W with W > 0 (e.g. 11=4), got {value!r}"
            )
        weights[key.strip()] = weight
    return weights


def _check_creation_options(source: Path, settings: RescaleSettings, out: Path) -> None:
    """Bad ``--co`` is refused before the progress bar draws."""
    from geotiler.creation_options import check_creation_options
    from geotiler.io import open_raster
    from geotiler.rescale.run import writing_profile

    if not settings.creation_options:
        return
    with open_raster(source) as dataset:
        dtype = dataset.dtypes[0]
    profile = writing_profile(dtype, None, compress=settings.compress, block_px=settings.block_px)
    check_creation_options(settings.creation_options, profile, cog=settings.cog, output=out)


def _source(
    cat: Catalog, name: str | None, mask: Path | None, *, explicit_dataset: bool
) -> tuple[Path, ClassTable | None]:
    """The mask to rescale and the class table to fall back on (the dataset's, when it applies)."""
    if mask is not None:
        return mask, cat.dataset_classes(name) if explicit_dataset else None
    path = cat.mask_path(name)
    if path is None:
        raise CatalogError(
            f"{cat.where}: dataset {name or cat.default_dataset!r} has no mask; give MASK"
        )
    from geotiler.synthetic import ensure_generated

    ensure_generated(cat, name)
    return path, cat.dataset_classes(name)


def _dataset_scene(cat: Catalog, name: str | None) -> Path:
    scenes = cat.scene_paths(name)
    if not scenes:
        raise CatalogError(
            f"{cat.where}: dataset {name or cat.default_dataset!r} has no scenes to take the "
            "target grid from; give --like RASTER, --factor N or --resolution R"
        )
    from geotiler.synthetic import ensure_generated

    ensure_generated(cat, name)
    return next(iter(scenes.values()))


def print_summary(result: RescaleResult) -> None:
    """Time, throughput and each class's share in the source vs the output."""
    path = f"exact, factor {result.factor}" if result.factor else "GDAL warper"
    console.print(
        f"[bold]{result.path}[/]: {result.target.describe()}\n"
        f"{result.method} ({path}) of {result.source_px / 1e6:,.1f} Mpx in {result.seconds:.2f} s "
        f"= {result.mpx_per_s:,.1f} Mpx/s",
        highlight=False,
    )
    shares = result.shares()
    if not shares:
        return
    names = result.classes.names if result.classes else {}
    sampled = " (sampled)" if result.source_sampled else ""
    table = Table(title="class shares, nodata left out", title_justify="left")
    for column in ("value", "class", f"source{sampled}", "output", "change"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for value, src, out in shares:
        change = out - src
        style = "red" if change < -0.001 else ("green" if change > 0.001 else "")
        table.add_row(
            str(value),
            names.get(value, ""),
            f"{100 * src:.2f}%",
            f"{100 * out:.2f}%",
            f"[{style}]{100 * change:+.2f} pp[/]" if style else f"{100 * change:+.2f} pp",
        )
    console.print(table)
