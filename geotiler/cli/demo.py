"""``geotiler demo``: the whole chain on the generated demo dataset, with a report."""

from __future__ import annotations

import json
import math

from rich.table import Table

from geotiler.cli import app
from geotiler.cli.console import console, progress_bar
from geotiler.cli.options import CatalogOption, QuietOption, load_catalog
from geotiler.cli.run import find_pipeline, print_report, run_with_display


@app.command()
def demo(catalog: CatalogOption = None, quiet: QuietOption = False) -> None:
    """Generate the demo dataset if needed, run pipelines/demo.yaml and write a report.

    Example: [bold]geotiler demo[/] (what `make demo` runs; about 5 minutes on 2 CPU cores)
    """
    from geotiler.report import write_report
    from geotiler.synthetic import ensure_demo

    cat = load_catalog(catalog)
    pipeline = find_pipeline("demo", cat)
    name = "demo"
    with progress_bar("generate demo data", 1, unit="dataset", quiet=quiet) as advance:
        ensure_demo(cat, name)
        advance(1)
    report = run_with_display(cat, pipeline, dataset=name, start=None, only=None, quiet=quiet)
    path = write_report(cat, report)
    if quiet:
        return
    print_report(report)
    metrics_file = cat.output_path("evaluate", name) / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        table = Table(title="map against the reference: IoU per class", title_justify="left")
        table.add_column("class")
        table.add_column("IoU", justify="right")
        for entry in metrics["classes"]:
            iou = entry["iou"]
            table.add_row(
                f"{entry['id']} {entry['name']}",
                "-" if iou is None or math.isnan(iou) else f"{iou:.3f}",
            )
        console.print(table)
    console.print(f"report: {path}")
