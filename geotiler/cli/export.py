"""``geotiler export``: a checkpoint to an ONNX model with its metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geotiler.cli import app
from geotiler.cli.console import console
from geotiler.cli.options import (
    CatalogOption,
    DatasetOption,
    OverwriteOption,
    QuietOption,
    load_catalog,
)


@app.command()
def export(
    checkpoint: Annotated[
        Path | None, typer.Argument(help="Checkpoint (default: the dataset's best.pt).")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="ONNX file to write.")] = Path(
        "model.onnx"
    ),
    overwrite: OverwriteOption = False,
    dataset: DatasetOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Export a checkpoint to ONNX for `geotiler predict --model model.onnx` or other runtimes.

    The model has dynamic batch and spatial axes; its metadata holds the bands, their
    normalisation and the class table.

    Example: [bold]geotiler export work/demo/run/best.pt -o model.onnx[/]
    """
    checkpoint = checkpoint or load_catalog(catalog).output_path("train", dataset) / "best.pt"
    from geotiler.inference import export_onnx

    path = export_onnx(checkpoint, output, overwrite=overwrite)
    if not quiet:
        console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
