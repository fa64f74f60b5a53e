"""``geotiler predict``: whole-scene inference into a georeferenced land-cover map."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from geotiler.catalog import Catalog
from geotiler.cli import app
from geotiler.cli.console import console, err_console, progress_bar
from geotiler.cli.options import (
    CatalogOption,
    ConfigOption,
    DatasetOption,
    OverwriteOption,
    QuietOption,
    load_catalog,
)
from geotiler.config import load_pipeline, resolve_settings
from geotiler.grid import Grid
from geotiler.predict import PredictResult, PredictSettings, count_tiles, predict_scene


@app.command()
def predict(
    scene: Annotated[
        Path | None, typer.Argument(help="Scene GeoTIFF (default: the dataset's first scene).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output map (default: work dir).")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="Checkpoint (.pt) or ONNX export (default: best.pt)."),
    ] = None,
    overlap: Annotated[
        int | None, typer.Option(help="Tile overlap in px, blended (default: a quarter tile).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Tiles per forward pass.")] = None,
    classes: Annotated[
        str | None,
        typer.Option(help="Restrict the map to these classes (names or ids, comma-separated)."),
    ] = None,
    confidence: Annotated[
        Path | None, typer.Option(help="Also write the max probability (float32 GeoTIFF).")
    ] = None,
    probabilities: Annotated[
        Path | None,
        typer.Option(help="Also write per-class probabilities (uint8, value / 254)."),
    ] = None,
    use: Annotated[
        str,
        typer.Option(
            help="Checkpoint member: auto (what validation chose), network, baseline, ensemble."
        ),
    ] = "auto",
    tta: Annotated[bool | None, typer.Option("--tta", help="D4 test-time augmentation.")] = None,
    cog: Annotated[bool | None, typer.Option("--cog", help="Cloud-Optimised GeoTIFF.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    overwrite: OverwriteOption = False,
    dataset: DatasetOption = None,
    config: ConfigOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Predict a land-cover map of a scene of any size on the scene's exact grid.

    Tiles of the model's size slide over the scene with --overlap px; overlapping predictions are
    blended with a Hann window so no seams show; the last tile row and column are snapped to the
    scene's edge. Pixels that are nodata in every band are nodata (0) in the map. --classes
    gives every valid pixel the most probable of the listed classes.

    Example: [bold]geotiler predict scene.tif -o landcover.tif --model run/best.pt --cog[/]
    """
    cat = load_catalog(catalog)
    settings = resolve_settings(
        PredictSettings,
        stage="predict",
        cli={
            "overlap": overlap,
            "batch_size": batch_size,
            "tta": tta,
            "cog": cog,
            "device": device,
        },
        pipeline=load_pipeline(config),
    )
    if scene is None:
        from geotiler.synthetic import ensure_generated

        ensure_generated(cat, dataset)
        scene = next(iter(cat.scene_paths(dataset).values()))
    output = output or cat.output_path("predict", dataset)
    model = model or _default_model(cat, dataset, quiet=quiet)
    from geotiler.inference import load_predictor

    predictor = load_predictor(model, device=settings.device, use=use)
    class_ids = (
        [predictor.classes.resolve(k.strip()) for k in classes.split(",")] if classes else None
    )
    total = count_tiles(Grid.from_raster(scene), predictor.tile_size, settings.overlap)
    with progress_bar("predict", total, unit="tiles", quiet=quiet) as advance:
        result = predict_scene(
            scene,
            output,
            predictor=predictor,
            classes=predictor.classes,
            overlap_px=settings.overlap,
            batch_size=settings.batch_size,
            class_ids=class_ids,
            tta=settings.tta,
            confidence=confidence,
            probabilities=probabilities,
            cog=settings.cog,
            overwrite=overwrite,
            progress=advance,
        )
    if not quiet:
        _summary(result, predictor.classes.names)


REFERENCE_MODEL = "demo-unet-tiny.pt"


def _default_model(cat: Catalog, dataset: str | None, *, quiet: bool) -> Path:
    """The dataset's trained best.pt; for a generated dataset not trained yet, the reference."""
    trained = cat.output_path("train", dataset) / "best.pt"
    if trained.exists() or cat.dataset(dataset).synthetic is None:
        return trained
    from importlib import resources

    reference = Path(str(resources.files("geotiler"))) / "data" / "models" / "reference"
    if not quiet:
        err_console.print(
            f"[yellow]note:[/] {trained} does not exist yet; using the reference model trained "
            "on the demo dataset (train your own with `geotiler train`)"
        )
    return reference / REFERENCE_MODEL


def _summary(result: PredictResult, names: dict[int, str]) -> None:
    xres, yres = result.grid.resolution
    hectares = xres * yres / 10_000
    table = Table(title=f"{result.output}: area per class", title_justify="left")
    for column in ("class", "pixels", "hectares", "share"):
        table.add_column(column, justify="left" if column == "class" else "right")
    total = sum(result.class_pixels.values()) or 1
    for class_id, pixels in sorted(result.class_pixels.items()):
        table.add_row(
            f"{class_id} {names.get(class_id, '')}",
            f"{pixels:,}",
            f"{pixels * hectares:,.1f}",
            f"{100 * pixels / total:.1f}%",
        )
    console.print(table)
    console.print(
        f"{result.tiles} tiles in {result.seconds:.1f} s "
        f"({result.tiles / max(result.seconds, 1e-9):.1f} tiles/s); "
        f"{result.nodata_pixels:,} nodata pixels"
    )
