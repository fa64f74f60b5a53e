"""``geotiler synth``: generate the mini-Catalonia dataset (the demo data) into a folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from geotiler.cli import app
from geotiler.cli.console import console, progress_bar
from geotiler.cli.options import (
    CatalogOption,
    ConfigOption,
    DatasetOption,
    OverwriteOption,
    QuietOption,
    load_catalog,
    load_pipeline,
)
from geotiler.errors import CatalogError

MASK_LAYOUTS = ("tiled", "strip")

if TYPE_CHECKING:
    from geotiler.catalog import Catalog, SynthSpec
    from geotiler.synthetic import SynthResult


@app.command()
def synth(
    out_dir: Annotated[
        Path | None,
        typer.Argument(
            help="Folder to write into (default: the dataset's data folder).", file_okay=False
        ),
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", min=64, help="Scene side in 10 m pixels.")
    ] = None,
    factor: Annotated[
        int | None, typer.Option(min=1, help="Mask pixels per scene pixel side (10: 1 m mask).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same bytes).")] = None,
    clouds: Annotated[
        float | None,
        typer.Option("--clouds", min=0.0, max=0.95, help="Share of each scene under clouds."),
    ] = None,
    mask_layout: Annotated[
        str | None,
        typer.Option(
            "--mask-layout",
            help="tiled (512 px deflate tiles) or strip (uncompressed one-row strips, as ICGC's).",
        ),
    ] = None,
    overwrite: OverwriteOption = False,
    dataset: DatasetOption = None,
    config: ConfigOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Generate a synthetic mini-Catalonia: a 1 m mask, 10 m scenes and cloud masks.

    The mask is 1 m land cover (catalonia12 classes); the April and August scenes have 10
    Sentinel-2 bands at 10 m. Settings default to the dataset's [bold]synthetic:[/] entry.

    Example: [bold]geotiler synth[/] (the demo dataset into its data folder), or
    [bold]geotiler synth /tmp/big --size 4096 --mask-layout strip[/]
    """
    if mask_layout is not None and mask_layout not in MASK_LAYOUTS:
        raise typer.BadParameter(
            f"{mask_layout!r} is not one of {', '.join(MASK_LAYOUTS)}", param_hint="--mask-layout"
        )
    cat = load_catalog(catalog)
    name = dataset or load_pipeline(config).get("dataset") or cat.default_dataset
    spec = _resolve_spec(
        cat,
        name,
        {
            "scene_px": size,
            "factor": factor,
            "seed": seed,
            "cloud_fraction": clouds,
            "mask_layout": mask_layout,
        },
    )
    target = out_dir or cat.data_dir(name)
    from geotiler.synthetic import synthesize
    from geotiler.synthetic.dataset import check_outputs, file_names

    names = file_names(cat, name)
    check_outputs(target, names, overwrite=overwrite)
    mask_rows = spec.scene_px * spec.factor
    with progress_bar("synth", mask_rows, unit="mask rows", quiet=quiet) as advance:
        result = synthesize(
            target,
            spec,
            names=names,
            classes=cat.dataset_classes(name),
            overwrite=overwrite,
            progress=advance,
        )
    if not quiet:
        _print_summary(result, cat.dataset_classes(name).names)


def _resolve_spec(catalog: Catalog, name: str, cli: dict[str, Any]) -> SynthSpec:
    """Command line over the dataset's ``synthetic:`` entry (pipelines have no synth section)."""
    from pydantic import ValidationError

    from geotiler.catalog import SynthSpec, describe_validation_error

    base = catalog.dataset(name).synthetic
    if base is None:
        raise CatalogError(
            f"{catalog.where}: dataset {name!r} has no 'synthetic:' entry, so it cannot be "
            "generated; pick a generated dataset with --dataset (e.g. demo)"
        )
    values = {**base.model_dump(), **{k: v for k, v in cli.items() if v is not None}}
    try:
        return SynthSpec.model_validate(values)
    except ValidationError as exc:
        raise CatalogError(f"synth settings: {describe_validation_error(exc)}") from exc


def _print_summary(result: SynthResult, class_names: dict[int, str]) -> None:
    files = Table(
        title=f"generated in {result.seconds:.1f} s into {result.mask.parent}", title_justify="left"
    )
    for column in ("file", "grid", "size"):
        files.add_column(column, justify="right" if column == "size" else "left")
    files.add_row(result.mask.name, result.mask_grid.describe(), _size(result.mask))
    for path in [*result.scenes.values(), *result.cloud_masks.values()]:
        files.add_row(path.name, result.scene_grid.describe(), _size(path))
    files.add_row(result.manifest.name, "spec, grids, class shares", _size(result.manifest))
    console.print(files)
    shares = Table(title="classes in the mask", title_justify="left")
    for column in ("id", "name", "share"):
        shares.add_column(column, justify="left" if column == "name" else "right")
    for value, share in result.class_shares.items():
        shares.add_row(str(value), class_names.get(value, "nodata"), f"{100 * share:.2f}%")
    console.print(shares)
    cover = Table(title="cloud cover", title_justify="left")
    for column in ("season", "cloud", "shadow"):
        cover.add_column(column, justify="left" if column == "season" else "right")
    for season, fractions in result.cloud_fractions.items():
        cover.add_row(
            season, f"{100 * fractions['cloud']:.1f}%", f"{100 * fractions['shadow']:.1f}%"
        )
    console.print(cover)


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
