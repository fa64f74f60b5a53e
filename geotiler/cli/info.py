"""``geotiler info``: what a raster, a tile store or a model file holds."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from geotiler.cli import app
from geotiler.cli.console import console, progress_bar
from geotiler.cli.options import QuietOption

if TYPE_CHECKING:
    from geotiler.info import RasterInfo
    from geotiler.model_files import ModelInfo


@app.command()
def info(
    path: Annotated[
        Path,
        typer.Argument(help="A raster, a tile store or a model (.pt, TorchScript .ts, .onnx)."),
    ],
    sample_px: Annotated[
        int, typer.Option(help="Pixels sampled for the class histogram of large rasters.")
    ] = 4_000_000,
    verify: Annotated[
        bool, typer.Option("--verify", help="Tile store: read every tile and check it.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Describe a raster: grid, dtype, bands, nodata, block layout, overviews, class histogram.

    A tile store is checked as it opens (every shard there, its index intact); --verify also
    reads every tile and checks its class counts and band sums against the store's index.
    A model (a checkpoint, or a TorchScript or ONNX export) shows its architecture, bands,
    classes, tile size, metrics and training settings.

    Example: [bold]geotiler info work/demo/data/mask_1m.tif[/], [bold]geotiler info
    work/demo/tiles.zarr --verify[/], [bold]geotiler info work/demo/run/best.pt[/]
    """
    if path.is_dir() and (path / "zarr.json").is_file():
        from geotiler.cli.tile import print_store_summary
        from geotiler.tiles.store import TileStore

        store = TileStore.open(path)
        if not quiet:
            console.print(f"[bold]{path}[/]: {len(store)} tiles, {store.describe()}")
            print_store_summary(store.attrs)
        if verify:
            _verify(path, len(store), quiet=quiet)
        return
    from geotiler.model_files import describe_model, looks_like_model

    if path.is_file() and looks_like_model(path):
        model = describe_model(path)
        if not quiet:
            _print_model(model)
        return

    from geotiler.info import raster_info

    details = raster_info(path, sample_px=sample_px)
    if not quiet:
        _print_raster(details)


def _verify(path: Path, tiles: int, *, quiet: bool) -> None:
    from geotiler.errors import StoreError
    from geotiler.tiles.verify import verify_tiles

    with progress_bar("verify", tiles, unit="tiles", quiet=quiet) as advance:
        report = verify_tiles(path, progress=advance)
    if report.problems:
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise StoreError(
            f"store {path}: {report.problems[0]}{more}; re-run tile to rebuild it (--overwrite)"
        )
    if not quiet:
        console.print(
            f"verified {report.tiles} tiles in {report.shards} shards: all readable and as the "
            "index says"
        )


def _key_values(title: str, rows: Iterable[tuple[str, str]]) -> Table:
    """A two-column key/value table (the file's facts, a model's settings)."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    return table


def _print_raster(details: RasterInfo) -> None:
    console.print(_key_values(str(details.path), details.rows()))
    if details.histogram:
        hist = Table(
            title="class histogram" + (" (sampled)" if details.sampled else ""),
            title_justify="left",
        )
        for column in ("value", "name", "pixels", "share"):
            hist.add_column(column, justify="right" if column in ("pixels", "share") else "left")
        total = sum(details.histogram.values())
        for pixel_value, count in sorted(details.histogram.items()):
            name = details.class_names.get(pixel_value, "")
            hist.add_row(str(pixel_value), name, f"{count:,}", f"{100 * count / total:.2f}%")
        console.print(hist)


def _print_model(model: ModelInfo) -> None:
    console.print(_key_values(str(model.path), model.rows()))
    if model.classes:
        iou = model.class_iou()
        classes = Table(title="classes", title_justify="left")
        classes.add_column("id", justify="right")
        classes.add_column("name")
        if iou:
            classes.add_column("val IoU (best epoch)", justify="right")
        for class_id, name in sorted(model.classes.items()):
            score = [f"{iou[class_id]:.3f}" if class_id in iou else ""] if iou else []
            classes.add_row(str(class_id), name, *score)
        console.print(classes)
    settings = model.settings()
    if settings:
        rows = [(k, str(v)) for k, v in sorted(settings.items()) if v not in (None, [], {})]
        console.print(_key_values("training settings", rows))
