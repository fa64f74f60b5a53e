"""``geotiler predict``: whole-scene inference into a georeferenced land-cover map."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from geotiler.cli import app
from geotiler.cli.console import console, err_console, progress_bar
from geotiler.cli.options import (
    CatalogOption,
    ConfigOption,
    CreationOption,
    DatasetOption,
    OverwriteOption,
    QuietOption,
    creation_options,
    load_catalog,
    load_pipeline,
    resolve_settings,
)

if TYPE_CHECKING:
    from geotiler.catalog import Catalog
    from geotiler.predict import PredictResult


@app.command()
def predict(
    scenes: Annotated[
        list[str] | None,
        typer.Argument(
            help="Scenes: a file, or several files, folders or globs (default: the dataset's "
            "first scene).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output map, or a folder for several scenes: FOLDER/<name>.tif each "
            "(default: work dir).",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", "-m", help="Checkpoint (.pt), TorchScript (.ts) or ONNX (default: best.pt)."
        ),
    ] = None,
    overlap: Annotated[
        int | None, typer.Option(help="Tile overlap in px, blended (default: a quarter tile).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Tiles per forward pass.")] = None,
    classes: Annotated[
        str | None,
        typer.Option(
            help="Map only these classes (names or ids, comma-separated); pixels whose most "
            "probable class is another one are nodata."
        ),
    ] = None,
    min_confidence: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Leave pixels below this top probability as nodata."),
    ] = None,
    bands: Annotated[
        str | None,
        typer.Option(
            help="Names of the scene's bands in file order (comma-separated), when the file does "
            "not name them; bands are matched to the model's by name. Or 1-based band numbers, "
            "one per model band in its order (e.g. 4,3,2,8), to pick the file's bands by "
            "position."
        ),
    ] = None,
    src_nodata: Annotated[
        float | None,
        typer.Option(
            help="The scenes' nodata value, overriding the files' (a pixel with it in any band "
            "is nodata in the map)."
        ),
    ] = None,
    dst_nodata: Annotated[
        int | None,
        typer.Option(help="The map's nodata value (default: the class table's, or 255)."),
    ] = None,
    confidence: Annotated[
        Path | None, typer.Option(help="Also write the max probability (float32 GeoTIFF).")
    ] = None,
    probabilities: Annotated[
        Path | None,
        typer.Option(help="Also write per-class probabilities (uint8, value / 254)."),
    ] = None,
    clouds: Annotated[
        list[str] | None,
        typer.Option(
            "--clouds",
            metavar="[SCENE=]FILE",
            help="Cloud mask (1 cloud, 2 shadow, 0 clear) on a scene's grid, by scene name (file "
            "stem); a bare FILE with one scene. Cloudy pixels are nodata unless another season "
            "sees them. Repeatable. Default: the catalog's, for the dataset's scene.",
        ),
    ] = None,
    detect_clouds: Annotated[
        bool,
        typer.Option(
            "--detect-clouds",
            help="Find clouds with the spectral test (bright and white in B02, B03, B04) in "
            "scenes without a cloud mask.",
        ),
    ] = False,
    use: Annotated[
        str,
        typer.Option(
            help="Checkpoint member: auto (what validation chose), network, baseline, ensemble."
        ),
    ] = "auto",
    tta: Annotated[bool | None, typer.Option("--tta", help="D4 test-time augmentation.")] = None,
    cog: Annotated[bool | None, typer.Option("--cog", help="Cloud-Optimised GeoTIFF.")] = None,
    co: CreationOption = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    allow_unfinished: Annotated[
        bool,
        typer.Option(
            "--allow-unfinished", help="Use a checkpoint of a run that was interrupted or failed."
        ),
    ] = False,
    overwrite: OverwriteOption = False,
    dataset: DatasetOption = None,
    config: ConfigOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Predict a land-cover map of a scene of any size on the scene's exact grid.

    Tiles of the model's size slide over the scene with --overlap px; overlapping predictions are
    blended with a Hann window so no seams show; the last tile row and column are snapped to the
    scene's edge. Pixels that are nodata in every band are nodata (0) in the map. Bands are
    matched to the model's by name (the file's band descriptions, or --bands) and reordered.

    Several scenes (files, a folder or a glob) give one map each in the output folder, named
    after the scene, with one model load. Several season files of one grid with a .tif output
    give one map fused per pixel from the seasons that see it clear of clouds.

    \b
    Examples:
      [bold]geotiler predict scene.tif -o landcover.tif --model run/best.pt --cog[/]
      [bold]geotiler predict images/ -o maps/ --model run/best.pt[/]
      [bold]geotiler predict apr.tif aug.tif -o map.tif --clouds apr=apr_clouds.tif[/]
    """
    from geotiler.predict import PredictSettings

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
            "creation_options": creation_options(co),
        },
        pipeline=load_pipeline(config),
    )
    if not scenes:
        from geotiler.synthetic import ensure_generated

        ensure_generated(cat, dataset)
        season, first = next(iter(cat.scene_paths(dataset).items()))
        scenes = [str(first)]
        catalog_clouds = cat.cloud_mask_paths(dataset)
        if not clouds and season in catalog_clouds:
            clouds = [str(catalog_clouds[season])]
    output = output or cat.output_path("predict", dataset)
    model = model or _default_model(cat, dataset, quiet=quiet)
    from geotiler.inference import load_predictor
    from geotiler.outputs import check_not_input
    from geotiler.predict_many import PredictOptions, run_predict

    for target in (output, confidence, probabilities):
        if target is not None:
            check_not_input(target, [model])
    predictor = load_predictor(
        model, device=settings.device, allow_unfinished=allow_unfinished, use=use
    )
    class_ids = (
        [predictor.classes.resolve(k.strip()) for k in classes.split(",")] if classes else None
    )
    options = PredictOptions(
        overlap_px=settings.overlap,
        batch_size=settings.batch_size,
        class_ids=class_ids,
        min_confidence=min_confidence,
        bands=[b.strip() for b in bands.split(",")] if bands else None,
        detect_clouds=detect_clouds,
        tta=settings.tta,
        cog=settings.cog,
        creation_options=settings.creation_options,
        src_nodata=src_nodata,
        dst_nodata=dst_nodata,
        overwrite=overwrite,
    )
    mode, results = run_predict(
        scenes, output, predictor=predictor, classes=predictor.classes, options=options,
        confidence=confidence, probabilities=probabilities, clouds=clouds or (),
        progress=lambda label, total, unit: progress_bar(label, total, unit=unit, quiet=quiet),
    )  # fmt: skip
    if quiet:
        return
    if mode == "many":
        _many_summary(results, output)
    else:
        _summary(results[0], predictor.classes.names)


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
        f"{result.nodata_pixels:,} nodata pixels, of which {result.cloudy_pixels:,} under clouds"
    )


def _many_summary(results: list[PredictResult], folder: Path) -> None:
    tiles = sum(r.tiles for r in results)
    seconds = sum(r.seconds for r in results)
    console.print(
        f"{len(results)} maps in {folder}: {tiles} tiles in {seconds:.1f} s "
        f"({tiles / max(seconds, 1e-9):.1f} tiles/s)"
    )
