"""``geotiler export``: a checkpoint to ONNX, TorchScript or a slim checkpoint, with metadata."""

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
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="model.onnx (ONNX), model.ts (TorchScript) or slim.pt."
        ),
    ] = Path("model.onnx"),
    use: Annotated[
        str,
        typer.Option(help="ONNX/TorchScript: auto (refused unless it is the network) or network."),
    ] = "auto",
    overwrite: OverwriteOption = False,
    dataset: DatasetOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Export a checkpoint to ONNX, TorchScript or a slim .pt, chosen by the output's suffix.

    .onnx: dynamic batch/height/width axes, metadata (bands, their normalisation, the class
    table) in the model's metadata_props. .ts or .torchscript: TorchScript (scripted; traced at
    the tile size where scripting fails) with the same metadata as the extra file geotiler.json.
    .pt: the checkpoint without the optimiser and RNG state of --resume. All three run with
    `geotiler predict --model`.
    ONNX and TorchScript hold a network only: a pixel-gbm checkpoint, or one that predicts with
    the network and the pixel baseline averaged, needs .pt (or --use network).

    Example: [bold]geotiler export work/demo/run/best.pt -o model.ts[/]
    """
    from geotiler.export import FORMATS, export_model

    checkpoint = checkpoint or load_catalog(catalog).output_path("train", dataset) / "best.pt"
    path = export_model(checkpoint, output, overwrite=overwrite, use=use)
    if not quiet:
        kind = FORMATS[path.suffix.lower()][0]
        console.print(f"wrote {path} ({kind}, {path.stat().st_size / 1e6:.1f} MB)")
