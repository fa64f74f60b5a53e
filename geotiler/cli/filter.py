"""``geotiler filter``: change a tile store's filters, splits and balancing (index only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geotiler.cli import app
from geotiler.cli.options import (
    CatalogOption,
    ConfigOption,
    DatasetOption,
    QuietOption,
    load_catalog,
    load_pipeline,
    resolve_settings,
)
from geotiler.cli.tile import (
    BalanceOption,
    BlockOption,
    FilterOption,
    IndexOption,
    SeedOption,
    SplitAoiOption,
    SplitOption,
    parse_split_aoi,
    print_store_summary,
    warn_empty_splits,
)

DECISION_KEYS = ("filters", "balance", "split", "split_aoi", "seed", "block_tiles")


@app.command(name="filter")
def filter_(
    store: Annotated[
        Path | None, typer.Argument(help="Tile store (default: the dataset's tiles.zarr).")
    ] = None,
    filters: FilterOption = None,
    no_filters: Annotated[
        bool, typer.Option("--no-filters", help="Drop the store's filters (keep every tile).")
    ] = False,
    balance: BalanceOption = None,
    split: SplitOption = None,
    split_aoi: SplitAoiOption = None,
    seed: SeedOption = None,
    block_tiles: BlockOption = None,
    index: IndexOption = None,
    dataset: DatasetOption = None,
    config: ConfigOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Re-decide filters, splits and balancing of a tile store without re-reading rasters.

    Options not given keep the store's current choice. --filter replaces the store's whole list
    of filters (give every filter you want in force; --no-filters drops them all); the summary
    prints the filters in force. Takes seconds even for large stores.

    \b
    Examples:
      [bold]geotiler filter --filter nodata:0.5 --filter water-only --filter cloud:0.2[/]
      [bold]geotiler filter work/demo/tiles.zarr --balance median --split block:0.7,0.2,0.1[/]
    """
    from geotiler.tiles.decisions import export_index, refilter
    from geotiler.tiles.footprints import check_index_path
    from geotiler.tiles.settings import TileSettings
    from geotiler.tiles.store import check_store

    pipeline = load_pipeline(config)
    target = store or load_catalog(catalog).output_path("tile", dataset or pipeline.get("dataset"))
    attrs = check_store(target, written_only=True)
    chosen = attrs.decisions.settings if attrs.decisions is not None else attrs.settings
    current = {k: v for k, v in chosen.items() if k in DECISION_KEYS}
    cli = {
        "filters": () if no_filters else (tuple(filters) if filters else None),
        "balance": balance, "split": split, "split_aoi": parse_split_aoi(split_aoi),
        "seed": seed, "block_tiles": block_tiles,
    }  # fmt: skip
    settings = resolve_settings(
        TileSettings, stage="tile", cli=cli, pipeline=_decisions_only(pipeline),
        dataset_defaults=current,
    )  # fmt: skip
    if index is not None:
        check_index_path(index)  # before the store's decisions change
    result = refilter(target, settings.decisions())
    if index is not None:
        export_index(result, index)
    warn_empty_splits(result.attrs)
    if not quiet:
        print_store_summary(result.attrs)


def _decisions_only(pipeline: dict[str, object]) -> dict[str, object]:
    section = pipeline.get("tile") or {}
    if not isinstance(section, dict):
        return pipeline
    return {**pipeline, "tile": {k: v for k, v in section.items() if k in DECISION_KEYS}}
