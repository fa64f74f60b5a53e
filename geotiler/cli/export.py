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
    use: Annotated[
        str, typer.Option(help="ONNX: auto (refused unless it is the network) or network.")
    ] = "auto",
    overwrite: OverwriteOption = False,
    dataset: DatasetOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Export a checkpoint to ONNX, or to a slim .pt with no training state.

    An .onnx output has dynamic batch and spatial axes and its metadata holds the bands, their
    normalisation and the class table (for `geotiler predict --model model.onnx` or other
    runtimes). A .pt output is the checkpoint without the optimiser and RNG state of --resume,
    pixel baseline included. ONNX holds a network only: a pixel-gbm checkpoint, or one that
    predicts with the network and the baseline averaged, needs .pt (or --use network).

    Example: [bold]geotiler export work/demo/run/best.pt -o model.onnx[/]
    """
    checkpoint = checkpoint or load_catalog(catalog).output_path("train", dataset) / "best.pt"
    if output.suffix == ".pt":
        from geotiler.train.checkpoint import export_for_inference

        path = export_for_inference(checkpoint, output, overwrite=overwrite)
    else:
        from geotiler.inference import export_onnx

        path = export_onnx(checkpoint, output, overwrite=overwrite, use=use)
    if not quiet:
        console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
