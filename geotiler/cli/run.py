"""``geotiler run``: the whole chain for a dataset, skipping stages that are up to date."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from geotiler.cli import app
from geotiler.cli.console import console, progress_bar
from geotiler.cli.options import (
    CatalogOption,
    DatasetOption,
    QuietOption,
    load_catalog,
    load_pipeline,
)
from geotiler.errors import CatalogError

if TYPE_CHECKING:  # the pipeline imports every stage: only when a command runs one
    from geotiler.catalog import Catalog
    from geotiler.pipeline import PipelineReport, StageReport


def find_pipeline(spec: str | Path, catalog: Catalog) -> Path:
    """A pipeline file: a path, else ``pipelines/<name>.yaml`` beside the catalog or packaged."""
    path = Path(spec)
    if path.is_file():
        return path
    from importlib import resources

    name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    for folder in (
        catalog.root / "pipelines",
        Path(str(resources.files("geotiler"))) / "data" / "pipelines",
    ):
        if (folder / name).is_file():
            return folder / name
    raise CatalogError(f"{spec}: pipeline not found (a YAML path or a name in pipelines/)")


def run_with_display(
    catalog: Catalog,
    pipeline_path: Path,
    *,
    dataset: str | None,
    start: str | None,
    only: list[str] | None,
    quiet: bool,
) -> PipelineReport:
    pipeline = load_pipeline(pipeline_path)
    from geotiler.pipeline import run_pipeline, select_stages

    only_stages = select_stages(only=only or ())
    force = select_stages(start=start) if start else list(only_stages)

    @contextlib.contextmanager
    def progress(stage: str, total: int, unit: str) -> Iterator[Callable[[int], None]]:
        with progress_bar(stage, total or 1, unit=unit, quiet=quiet) as advance:
            yield advance

    def announce(entry: StageReport) -> None:
        if not quiet:
            mark = {
                "ran": "[green]ran[/]",
                "skipped": "[dim]up to date, skipped[/]",
                "not needed": "[dim]not needed for this dataset[/]",
            }[entry.status]
            console.print(f"[bold]{entry.stage}[/]: {mark} {entry.seconds:.1f} s -> {entry.output}")

    return run_pipeline(
        catalog, pipeline, dataset=dataset, force=force, only=only_stages,
        progress=progress, on_stage=announce,
    )  # fmt: skip


def print_report(report: PipelineReport) -> None:
    table = Table(title=f"pipeline for dataset {report.dataset}", title_justify="left")
    for column in ("stage", "status", "seconds", "details"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for stage in report.stages:
        details = ", ".join(f"{k}: {v}" for k, v in stage.details.items())
        table.add_row(stage.stage, stage.status, f"{stage.seconds:.1f}", details)
    table.add_row("total", "", f"{sum(s.seconds for s in report.stages):.1f}", "", style="bold")
    console.print(table)


@app.command()
def run(
    pipeline: Annotated[
        str, typer.Argument(help="Pipeline YAML or the name of one in pipelines/.")
    ] = "demo",
    start: Annotated[
        str | None, typer.Option("--from", help="Re-run this stage and every later one.")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only this stage (repeatable).")
    ] = None,
    dataset: DatasetOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run the whole chain (rescale, tile, train, predict, evaluate) from a pipeline YAML.

    A stage whose output is up to date (same inputs and settings) is skipped; --from re-runs a
    stage and everything after it, --only runs just the stages named.

    Example: [bold]geotiler run pipelines/catalonia.yaml --from train[/]
    """
    cat = load_catalog(catalog)
    report = run_with_display(
        cat, find_pipeline(pipeline, cat), dataset=dataset, start=start, only=only, quiet=quiet
    )
    if not quiet:
        print_report(report)
