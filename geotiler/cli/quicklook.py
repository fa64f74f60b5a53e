"""``geotiler quicklook``: a legend and quick-look PNG of any class map."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geotiler.cli import app
from geotiler.cli.console import console
from geotiler.cli.options import CatalogOption, OverwriteOption, QuietOption, load_catalog


@app.command()
def quicklook(
    map_path: Annotated[
        Path, typer.Argument(help="Class map (GeoTIFF): a prediction or a reference mask.")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="PNG to write (default: MAP.png).")
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option("--classes", help="Catalog class table (default: the map's own)."),
    ] = None,
    overwrite: OverwriteOption = False,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Draw a class map with a legend of its classes and their shares of the labelled pixels.

    Colours and names come from the map's own class table (or --classes); values no table names
    get distinct colours and 'class N' labels.

    Example: [bold]geotiler quicklook landcover.tif -o landcover.png[/]
    """
    from geotiler.quicklook import write_map_quicklook

    table = load_catalog(catalog).class_table(classes) if classes else None
    target = output or map_path.with_suffix(".png")
    path = write_map_quicklook(map_path, target, classes=table, overwrite=overwrite)
    if not quiet:
        console.print(f"wrote {path}")
