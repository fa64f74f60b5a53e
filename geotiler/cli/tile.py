"""``geotiler tile``: scenes and a mask on one grid into a Zarr tile store (thin layer)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

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
    SchedulerOption,
    load_catalog,
)
from geotiler.config import load_pipeline, resolve_settings

FilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        "-f",
        help="Drop tiles: nodata[:max_fraction], water-only[:min_fraction], "
        "cloud[:max_fraction], dominant[:max_fraction]. Repeatable.",
    ),
]
BalanceOption = Annotated[
    str | None,
    typer.Option(help="Class balancing: none, inverse, sqrt-inverse, median, effective[:beta]."),
]
SplitOption = Annotated[
    str | None, typer.Option(help="Splits by spatial blocks: block[:train,val,test].")
]
SplitAoiOption = Annotated[
    list[str] | None,
    typer.Option(
        "--split-aoi", help="Force tiles touching polygons into a split: val=area.geojson."
    ),
]
SeedOption = Annotated[int | None, typer.Option(help="Seed for dealing blocks to splits.")]
BlockOption = Annotated[
    int | None, typer.Option(min=1, help="Split block side in tiles (default: about 30 blocks).")
]
CloudsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--clouds",
        metavar="[SCENE=]FILE",
        help="Cloud mask (1 cloud, 2 shadow, 0 clear) on the scene grid for a scene (file stem "
        "or catalog season), e.g. april=clouds.tif; a bare FILE with one scene. Overrides the "
        "catalog's. Repeatable.",
    ),
]
IndexOption = Annotated[
    Path | None,
    typer.Option("--index", help="Also write tile footprints to a .gpkg or .parquet for QGIS."),
]


@app.command()
def tile(
    scenes: Annotated[
        list[Path] | None, typer.Argument(help="Scenes on one grid (default: the dataset's).")
    ] = None,
    mask: Annotated[
        Path | None, typer.Option(help="Mask on the scene grid (default: the rescaled mask).")
    ] = None,
    clouds: CloudsOption = None,
    size: Annotated[int | None, typer.Option(min=8, help="Tile side in pixels [300].")] = None,
    overlap: Annotated[
        int | None, typer.Option(min=0, help="Pixels neighbouring tiles share [0].")
    ] = None,
    filters: FilterOption = None,
    balance: BalanceOption = None,
    split: SplitOption = None,
    split_aoi: SplitAoiOption = None,
    seed: SeedOption = None,
    block_tiles: BlockOption = None,
    aoi: Annotated[
        Path | None, typer.Option(help="Tile only where tiles touch these polygons.")
    ] = None,
    classes: Annotated[
        str | None, typer.Option(help="Class table: a catalog table name or a YAML/JSON file.")
    ] = None,
    nodata: Annotated[int | None, typer.Option(help="Mask value meaning no label.")] = None,
    index: IndexOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Store (default: work/<ds>/tiles.zarr).")
    ] = None,
    scheduler: SchedulerOption = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Dask threads.")] = None,
    overwrite: OverwriteOption = False,
    dataset: DatasetOption = None,
    config: ConfigOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Cut scenes and their mask into a sharded Zarr tile store with filters, splits, balancing.

    Tiles are SIZE px squares every SIZE - OVERLAP px; the last tile row and column are snapped
    to the bottom and right edges, so every tile is full size (edge tiles overlap a bit more).
    Tiles without a valid pixel are not stored. An interrupted run resumes when re-run.
    Each tile's cloud fraction comes from the scene's cloud mask (the catalog's or --clouds),
    else from a spectral test on bands B02, B03, B04; --filter cloud drops cloudy tiles.

    Examples: [bold]geotiler tile --size 300 --filter water-only[/],
    [bold]geotiler tile scene.tif --mask mask.tif --classes classes.yaml -o tiles.zarr[/],
    [bold]geotiler tile a.tif b.tif --mask m.tif --clouds a=clouds_a.tif --filter cloud:0.5[/],
    [bold]geotiler tile --overlap 50 --split block:0.7,0.15,0.15 --balance sqrt-inverse[/].
    """
    from geotiler.decisions import export_index
    from geotiler.tile import TileSettings, make_tiles

    pipeline = load_pipeline(config)
    name = dataset or pipeline.get("dataset")
    cli = {
        "size": size, "overlap": overlap, "filters": tuple(filters) if filters else None,
        "balance": balance, "split": split, "split_aoi": parse_split_aoi(split_aoi),
        "seed": seed, "block_tiles": block_tiles, "aoi": str(aoi) if aoi else None,
        "nodata": nodata, "classes": classes, "scheduler": scheduler, "workers": workers,
    }  # fmt: skip
    settings = resolve_settings(TileSettings, stage="tile", cli=cli, pipeline=pipeline)
    cat = load_catalog(catalog)
    from geotiler.tile_inputs import tile_inputs

    inputs = tile_inputs(
        cat, name, scenes or [], mask, settings.classes, settings.nodata, clouds=clouds or ()
    )
    target = output or cat.output_path("tile", name)
    from geotiler.tile import count_positions

    positions = count_positions(inputs, settings)
    with progress_bar("tiling", positions, unit="tiles", quiet=quiet) as advance:
        store = make_tiles(
            inputs, target, settings, overwrite=overwrite, progress=advance, command=_command()
        )
    if index is not None:
        export_index(store, index)
    if not quiet:
        print_store_summary(store.attrs)


def parse_split_aoi(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    areas = {}
    for value in values:
        split, sep, path = value.partition("=")
        if not sep or not path:
            raise typer.BadParameter(
                f"--split-aoi wants SPLIT=FILE (e.g. val=area.geojson), got {value!r}"
            )
        areas[split.strip()] = path.strip()
    return areas


def _command() -> str:
    argv = sys.argv
    if argv and Path(argv[0]).name in ("geotiler", "__main__.py") and len(argv) > 1:
        return "geotiler " + " ".join(shlex.quote(a) for a in argv[1:])
    return "geotiler tile ..."


def print_store_summary(attrs: dict[str, Any]) -> None:
    """Tiles total, kept, dropped per reason and per split; class shares before/after balancing."""
    summary = attrs.get("decisions", {}).get("summary")
    if not summary:
        return
    counts = Table(title="tiles", title_justify="left", show_header=False)
    counts.add_column("what", style="bold")
    counts.add_column("tiles", justify="right")
    counts.add_row("total", f"{summary['tiles']:,}")
    counts.add_row("kept", f"{summary['kept']:,}")
    for reason, n in summary["dropped"].items():
        counts.add_row(f"dropped: {reason}", f"{n:,}")
    for split, n in summary["splits"].items():
        counts.add_row(f"kept in {split}", f"{n:,}")
    console.print(counts)
    shares = Table(
        title=f"class pixel shares of training tiles (balance: {summary['balance']})",
        title_justify="left",
    )
    for column in ("id", "class", "before", "after"):
        shares.add_column(column, justify="left" if column == "class" else "right")
    for row in summary["classes"]:
        shares.add_row(
            str(row["id"]), row["name"], f"{100 * row['before']:.2f}%", f"{100 * row['after']:.2f}%"
        )
    console.print(shares)
