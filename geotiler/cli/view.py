"""``geotiler view``: a local web map of scenes, maps and the tile store, with corrections."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geotiler.cli import app
from geotiler.cli.console import console, err_console
from geotiler.cli.options import CatalogOption, DatasetOption, QuietOption, load_catalog

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@app.command()
def view(
    scenes: Annotated[
        list[Path] | None,
        typer.Argument(help="Scene files or folders (default: the dataset's scenes and outputs)."),
    ] = None,
    map_path: Annotated[
        Path | None, typer.Option("--map", help="Predicted class map.", dir_okay=False)
    ] = None,
    store: Annotated[Path | None, typer.Option(help="Tile store (outlines, verdicts).")] = None,
    confidence: Annotated[
        Path | None, typer.Option(help="Confidence raster (predict --confidence).", dir_okay=False)
    ] = None,
    probabilities: Annotated[
        Path | None,
        typer.Option(help="Probabilities raster (predict --probabilities).", dir_okay=False),
    ] = None,
    truth: Annotated[
        Path | None, typer.Option(help="Reference mask on the scene grid.", dir_okay=False)
    ] = None,
    corrections: Annotated[
        Path | None,
        typer.Option(
            help="Corrections GeoPackage (default: corrections.gpkg by the map).", dir_okay=False
        ),
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option(
            help="Run the page's fine-tune button continues (default: found).", file_okay=False
        ),
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    max_upload_mb: Annotated[int, typer.Option(min=1, help="Largest upload accepted.")] = 512,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the page in a browser.")
    ] = False,
    dataset: DatasetOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Serve a web map of scenes, the predicted map, confidence, reference and tile store.

    Pan and zoom; pick band combinations; toggle classes; click a pixel for its values and
    probabilities; draw corrections (saved to a GeoPackage as you draw) for
    `geotiler train --corrections`; drop a new scene on the page to predict it.

    \b
    Examples:
      [bold]geotiler view[/] (the default dataset)
      [bold]geotiler view scene.tif --map landcover.tif --store tiles.zarr --port 8000[/]
      [bold]geotiler view work/demo/[/]
    """
    from geotiler.view import require_view_packages

    require_view_packages()
    from geotiler.view.server import start_view
    from geotiler.view.sources import resolve_sources

    cat = load_catalog(catalog)
    sources = resolve_sources(
        cat,
        dataset,
        scenes=scenes or [],
        map_path=map_path,
        store=store,
        confidence=confidence,
        probabilities=probabilities,
        truth=truth,
        corrections=corrections,
        run=run,
    )
    if host not in LOCAL_HOSTS:
        err_console.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach this machine can see "
            "these rasters and write corrections; use the default 127.0.0.1 unless you mean it"
        )
    server, running = start_view(sources, host=host, port=port, max_upload_mb=max_upload_mb)
    if not quiet:
        console.print(f"geotiler view: [bold]{running.url}[/] (Ctrl+C stops it)")
        console.print(f"corrections are saved to {sources.corrections}", highlight=False)
        console.print(
            f"uploaded scenes and their maps go to {running.state.upload_dir}", highlight=False
        )
    if open_browser:
        import webbrowser

        webbrowser.open(running.url)
    server.start()
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
