"""``geotiler tile``: scenes and a mask on one grid into a Zarr tile store (thin layer)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from geotiler.cli import app
from geotiler.cli.console import console, err_console, progress_bar
from geotiler.cli.options import (
    CatalogOption,
    ConfigOption,
    DatasetOption,
    OverwriteOption,
    QuietOption,
    SchedulerOption,
    load_catalog,
    load_pipeline,
    resolve_settings,
)

if TYPE_CHECKING:
    from geotiler.tiles.schema import StoreAttrs

FilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        help="Drop tiles: nodata[:max_fraction], water-only[:min_fraction], "
        "cloud[:max_fraction], dominant[:max_fraction]. Repeatable.",
    ),
]
BalanceOption = Annotated[
    str | None,
    typer.Option(help="Class balancing: none, inverse, sqrt-inverse, median, effective[:beta]."),
]
SplitOption = Annotated[
    str | None,
    typer.Option(
        help="Splits: block[:train,val,test] (spatial blocks in each scene), scene[:...] (whole "
        "scenes, for chips), auto [auto: scene from 10 scene groups on]. Scenes under "
        "train/val/test folders or in train.txt/val.txt/test.txt keep their split."
    ),
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
    images: Annotated[
        list[str] | None,
        typer.Argument(
            help="Images: files, folders or globs (default: the dataset's scenes).",
            show_default=False,
        ),
    ] = None,
    masks: Annotated[
        list[str] | None,
        typer.Option(
            "--mask",
            help="Masks: files, folders or globs, paired with the images by file stem; one mask "
            "with several images makes them seasons of one grid (default: the rescaled mask).",
        ),
    ] = None,
    clouds: CloudsOption = None,
    size: Annotated[
        int | None, typer.Option(min=8, help="Tile side in pixels [chosen from the scenes].")
    ] = None,
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
        str | None,
        typer.Option(
            help="Class table: a catalog table name, or a YAML/JSON file ({id: name}, "
            "{id: {name, color}} or geotiler's table)."
        ),
    ] = None,
    nodata: Annotated[int | None, typer.Option(help="Mask value meaning no label.")] = None,
    unpaired: Annotated[
        str, typer.Option(help="Images or masks without a partner: error, or skip them.")
    ] = "error",
    skip_bad: Annotated[
        bool | None,
        typer.Option("--skip-bad", help="Skip images that cannot be read, and list them."),
    ] = None,
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
    """Cut images and their masks into a sharded Zarr tile store with filters, splits, balancing.

    IMAGES and --mask take files, folders or globs; pairs are matched by file stem (case and
    suffixes like _mask, _label, _gt, _sat ignored), and each pair keeps its own grid (or a
    plain pixel grid for PNG/JPEG chips). Masks may be class ids or RGB colours (mapped by the
    class table's colours), at the image's resolution or another one over the same extent
    (resampled per pair: nearest for coarser labels, mode for finer).

    Tiles are SIZE px squares every SIZE - OVERLAP px; the last tile row and column are snapped
    to the bottom and right edges, so every tile is full size. Without --size the tile side is
    chosen from the scenes (300 px, or smaller for small data; a chip's side for chips). Tiles
    without a valid pixel are not stored. An interrupted run resumes when re-run.
    Each tile's cloud fraction comes from the scene's cloud mask (the catalog's or --clouds),
    else from a spectral test on bands B02, B03, B04; --filter cloud drops cloudy tiles.

    \b
    Examples:
      [bold]geotiler tile --size 300 --filter water-only[/]
      [bold]geotiler tile images/ --mask masks/ -o tiles.zarr[/]
      [bold]geotiler tile "chips/*.jpg" --mask "chips/*_mask.png" --classes classes.json[/]
      [bold]geotiler tile a.tif b.tif --mask m.tif --clouds a=clouds_a.tif --filter cloud:0.5[/]
    """
    from geotiler.tiles.decisions import export_index
    from geotiler.tiles.footprints import check_index_path
    from geotiler.tiles.run import run_tile
    from geotiler.tiles.settings import TileSettings

    if unpaired not in ("error", "skip"):
        raise typer.BadParameter(f"--unpaired must be error or skip, got {unpaired!r}")
    pipeline = load_pipeline(config)
    name = dataset or pipeline.get("dataset")
    cli = {
        "size": size, "overlap": overlap, "filters": tuple(filters) if filters else None,
        "balance": balance, "split": split, "split_aoi": parse_split_aoi(split_aoi),
        "seed": seed, "block_tiles": block_tiles, "aoi": str(aoi) if aoi else None,
        "nodata": nodata, "classes": classes, "scheduler": scheduler, "workers": workers,
        "skip_bad": skip_bad,
    }  # fmt: skip
    settings = resolve_settings(TileSettings, stage="tile", cli=cli, pipeline=pipeline)
    if index is not None:
        check_index_path(index)  # before the tiling, not after
    store = run_tile(
        load_catalog(catalog), name, settings, images=images or (), masks=masks or (),
        clouds=clouds or (), unpaired=unpaired,  # type: ignore[arg-type]
        output=output, overwrite=overwrite, command=_command(),
        progress=lambda label, total, unit: progress_bar(label, total, unit=unit, quiet=quiet),
    )  # fmt: skip
    if index is not None:
        export_index(store, index)
    warn_empty_splits(store.attrs)
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


def print_store_summary(attrs: StoreAttrs) -> None:
    """Scenes and the plan's choices; tiles total, kept, dropped per reason and per split; class
    shares before/after balancing."""
    from geotiler.tiles.decisions import dropped_label

    decisions = attrs.decisions
    if decisions is None or not decisions.summary:
        return
    summary = decisions.summary
    _print_plan(attrs)
    in_force = decisions.settings.get("filters") or []
    console.print(f"filters in force: {', '.join(in_force) if in_force else 'none'}")
    counts = Table(title="tiles", title_justify="left", show_header=False)
    counts.add_column("what", style="bold")
    counts.add_column("tiles", justify="right")
    counts.add_row("total", f"{summary['tiles']:,}")
    counts.add_row("kept", f"{summary['kept']:,}")
    for reason, n in summary["dropped"].items():
        counts.add_row(dropped_label(reason), f"{n:,}")
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


def warn_empty_splits(attrs: StoreAttrs) -> None:
    """A warning on stderr (even with --quiet) for each split left without a kept tile."""
    decisions = attrs.decisions
    if decisions is None or not decisions.summary:
        return
    splits = decisions.summary.get("splits", {})
    empty = [name for name, kept in splits.items() if kept == 0]
    if empty and sum(splits.values()) > 0:
        err_console.print(
            f"[yellow]warning:[/] no kept tile in the {' and '.join(empty)} split(s) "
            f"({', '.join(f'{k} {v}' for k, v in splits.items())}); train needs train and val "
            "tiles: use a larger area, smaller --size or --block-tiles, or other --split "
            "fractions",
            highlight=False,
            soft_wrap=True,
        )


def _print_plan(attrs: StoreAttrs) -> None:
    scenes = attrs.scenes
    groups = len({s.group for s in scenes})
    georef = sum(s.crs is not None for s in scenes)
    console.print(
        f"[bold]{len(scenes)}[/] scene(s) in {groups} group(s) ({georef} georeferenced), "
        f"{attrs.tile_size} px tiles every {attrs.stride} px; "
        f"split: {attrs.decisions.split_policy if attrs.decisions else '?'}"
    )
    for what, choice in attrs.plan.items():
        if isinstance(choice, dict):
            console.print(f"  {what}: {choice.get('value')} ({choice.get('why')})")
    for label, chosen in (
        ("masks resampled onto their image grid", [s for s in scenes if s.mask_resampled]),
        ("RGB masks mapped to class ids", [s for s in scenes if s.mask_rgb]),
    ):
        if chosen:
            shown = ", ".join(
                f"{s.name} ({s.mask_resampled})" if s.mask_resampled else s.name for s in chosen[:5]
            )
            more = f" and {len(chosen) - 5} more" if len(chosen) > 5 else ""
            console.print(f"  {label}: {len(chosen)}: {shown}{more}")
    skipped = attrs.plan.get("skipped scenes")
    if skipped:
        console.print(
            f"  [yellow]skipped (unreadable)[/]: {len(skipped)}: {', '.join(skipped[:10])}"
        )
