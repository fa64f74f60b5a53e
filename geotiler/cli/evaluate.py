"""``geotiler evaluate``: score a predicted map against a reference mask."""

from __future__ import annotations

import glob
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from geotiler.cli import app
from geotiler.cli.console import console, progress_bar
from geotiler.cli.options import (
    CatalogOption,
    DatasetOption,
    OverwriteOption,
    QuietOption,
    load_catalog,
)

if TYPE_CHECKING:
    from geotiler.catalog import ClassTable
    from geotiler.grid import Grid


@app.command()
def evaluate(
    prediction: Annotated[
        Path | None,
        typer.Argument(help="Predicted class map (GeoTIFF), or a folder or glob of maps."),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            "-t",
            help="Reference mask, or a folder or glob of masks paired with the maps by file "
            "stem (default: the dataset's).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Report folder (default: work dir).")
    ] = None,
    scene: Annotated[
        Path | None,
        typer.Option(
            "--scene",
            help="Scene for the quick-look, in true colour: bands named B04/B03/B02 or "
            "red/green/blue, else the file's RGB colour interpretation, else bands 1,2,3.",
        ),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option("--classes", help="Catalog class table (default: the reference's own)."),
    ] = None,
    overwrite: OverwriteOption = False,
    dataset: DatasetOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Score a map against a reference: per-class IoU, F1, precision, recall; PNGs.

    Writes metrics.json, a confusion matrix (CSV and PNG) and a quick-look PNG into a new report
    folder (--overwrite replaces a report folder geotiler wrote). Both rasters must share a grid;
    a reference on a finer, aligned grid is rescaled with mode first. Every class of the
    reference is scored (one the map never has counts with IoU 0) and mIoU averages the classes
    present in the reference; names come from --classes or the reference's own table.

    A folder (or glob) of maps is scored against a folder of masks: pairs by file stem, scores per
    pair and overall (from the summed confusion matrix) in metrics.json and pairs.csv.

    \b
    Examples:
      [bold]geotiler evaluate landcover.tif --truth mask_10m.tif -o report/[/]
      [bold]geotiler evaluate maps/ --truth masks/ -o report/[/]
    """
    cat = load_catalog(catalog)
    prediction = prediction or cat.output_path("predict", dataset)
    truth = truth or cat.output_path("rescale", dataset)
    report = output or cat.output_path("evaluate", dataset)
    from geotiler.evaluate import evaluate as run_evaluate
    from geotiler.grid import Grid

    table = cat.class_table(classes) if classes else None
    if _is_many(prediction) or _is_many(truth):
        _evaluate_many(prediction, truth, report, table, quiet=quiet, overwrite=overwrite)
        return
    rows = Grid.from_raster(prediction).rows
    with progress_bar("evaluate", rows, unit="rows", quiet=quiet) as advance:
        result = run_evaluate(
            prediction,
            truth,
            report,
            classes=table,
            scene=scene,
            rescale=_mode_rescale,
            progress=advance,
            overwrite=overwrite,
        )
    if quiet:
        return
    summary = Table(title=f"{prediction} vs {truth}", title_justify="left")
    for column in ("class", "IoU", "F1", "precision", "recall", "pixels"):
        summary.add_column(column, justify="left" if column == "class" else "right")
    for entry in result.metrics["classes"]:
        summary.add_row(
            f"{entry['id']} {entry['name']}",
            *(_pct(entry[k]) for k in ("iou", "f1", "precision", "recall")),
            f"{entry['support']:,}",
        )
    console.print(summary)
    metrics = result.metrics
    console.print(
        f"mIoU over the {metrics['classes_in_truth']} classes of the reference "
        f"{_pct(metrics['miou'])}, pixel accuracy {_pct(metrics['pixel_accuracy'])}, "
        f"macro F1 {_pct(metrics['macro_f1'])}; report in {result.report_dir}"
    )
    if metrics["class_names_from"] == "ids":
        console.print("[yellow]note:[/] the reference has no class table: pass --classes TABLE")


def _pct(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _mode_rescale(truth: Path, grid: Grid, out: Path) -> Path:
    from geotiler.rescale import rescale

    return rescale(truth, grid, out, method="mode", overwrite=True).path


def _is_many(path: Path) -> bool:
    return path.is_dir() or glob.has_magic(str(path))


def _evaluate_many(
    predictions: Path,
    truths: Path,
    report: Path,
    table: ClassTable | None,
    *,
    quiet: bool,
    overwrite: bool,
) -> None:
    from geotiler.evaluate_many import evaluate_many

    result = evaluate_many([predictions], [truths], report, classes=table, overwrite=overwrite)
    if quiet:
        return
    metrics = result.metrics
    pairs = Table(title=f"{predictions} vs {truths}", title_justify="left")
    for column in ("pair", "mIoU", "accuracy", "pixels"):
        pairs.add_column(column, justify="left" if column == "pair" else "right")
    for row in metrics["per_pair"][:20]:
        pairs.add_row(
            row["name"], _pct(row["miou"]), _pct(row["pixel_accuracy"]), f"{row['pixels_scored']:,}"
        )
    console.print(pairs)
    if len(metrics["per_pair"]) > 20:
        console.print(f"... and {len(metrics['per_pair']) - 20} more pairs (pairs.csv)")
    console.print(
        f"overall over {metrics['pairs']} pairs: mIoU {_pct(metrics['miou'])}, pixel accuracy "
        f"{_pct(metrics['pixel_accuracy'])}; report in {result.report_dir}"
    )
