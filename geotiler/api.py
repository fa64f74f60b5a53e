"""The Python API: each stage as one call, the same functions the CLI commands call.

``import geotiler`` loads none of this until a name is used (``geotiler.__getattr__``), so the
package imports fast and without torch or dask. Each function resolves its settings the way the
CLI does (keyword arguments over the ``config`` pipeline section over the built-in defaults,
validated by the stage's settings model, which rejects unknown keys) and calls the stage's library
function; the CLI commands call these functions, so both run the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from geotiler.config import load_pipeline, resolve_settings
from geotiler.progress import ProgressFactory, no_progress

if TYPE_CHECKING:
    from geotiler.catalog import Catalog, ClassTable
    from geotiler.evaluate import EvaluateResult
    from geotiler.evaluate_many import ManyResult
    from geotiler.inference import OnnxPredictor, TorchPredictor
    from geotiler.predict import PredictResult
    from geotiler.rescale import RescaleResult
    from geotiler.tiles.store import TileStore
    from geotiler.train.trainer import Callbacks, TrainResult

PathArg = str | PathLike[str]


def _catalog(catalog: Catalog | PathArg | None) -> Catalog:
    from geotiler.catalog import Catalog

    return catalog if isinstance(catalog, Catalog) else Catalog.load(catalog)


def _paths(values: PathArg | Sequence[PathArg]) -> list[str]:
    if isinstance(values, str | PathLike):
        return [str(values)]
    return [str(v) for v in values]


def open_store(path: PathArg) -> TileStore:
    """Open a complete tile store for reading.

    Args:
        path: The ``.zarr`` folder ``geotiler tile`` wrote.

    Returns:
        The store: ``len(store)`` tiles, ``store.classes``, ``store.bands``,
        ``store.to_xarray()``.

    Raises:
        StoreError: missing, not a geotiler tile store, or incomplete.

    Examples:
        >>> store = geotiler.open_store("tiles.zarr")
        >>> store.to_xarray()["masks"].sizes
    """
    from geotiler.tiles.store import TileStore

    return TileStore.open(path)


def rescale_mask(
    mask: PathArg,
    output: PathArg,
    *,
    like: PathArg | None = None,
    classes: ClassTable | None = None,
    overwrite: bool = False,
    config: PathArg | None = None,
    progress: ProgressFactory = no_progress,
    **settings: Any,
) -> RescaleResult:
    """Rescale a class mask onto a coarser grid (``geotiler rescale``).

    Named ``rescale_mask``, not ``rescale``, because ``geotiler.rescale`` is the rescale
    subpackage (``geotiler.rescale.rescale`` is its lower-level function); a function of that
    name would be shadowed by, or shadow, the subpackage.

    Args:
        mask: The class mask (e.g. 1 m land cover).
        output: The GeoTIFF to write (never one of the inputs).
        like: Take the target grid from this raster; otherwise give ``factor=N`` or
            ``resolution=R`` in ``settings``.
        classes: Class table (names for weights, nodata), e.g. ``catalog.class_table("icgc")``.
        overwrite: Replace an existing output geotiler wrote.
        config: Pipeline YAML whose ``rescale`` section supplies settings.
        progress: Progress factory ``(label, total, unit) -> context(advance)``.
        **settings: Fields of :class:`geotiler.rescale.RescaleSettings` (``method``, ``factor``,
            ``resolution``, ``class_weights``, ``memory_mb``, ``cog``; ``src_nodata``: the
            mask's nodata, overriding the file's and the class table's; ``dst_nodata``: the
            output's; ``creation_options``: GDAL creation options as with ``--co``, e.g.
            ``{"COMPRESS": "ZSTD"}``).

    Returns:
        What was written and measured: path, target grid, class shares, Mpx/s.

    Examples:
        >>> result = geotiler.rescale_mask("mask_1m.tif", "mask_10m.tif", factor=10)
        >>> result.shares()
    """
    from geotiler.grid import Grid
    from geotiler.io import check_output
    from geotiler.rescale import RescaleSettings, rescale_with_settings, target_grid

    resolved = resolve_settings(
        RescaleSettings, stage="rescale", cli=settings, pipeline=load_pipeline(config)
    )
    source_grid = Grid.from_raster(mask)
    target = target_grid(
        source_grid, like=like, factor=resolved.factor, resolution=resolved.resolution
    )
    check_output(Path(output), overwrite=overwrite, kind="geotiff", inputs=[Path(mask)])
    with progress("rescaling", source_grid.rows, "source rows") as advance:
        return rescale_with_settings(
            mask, target, output, resolved, classes=classes, overwrite=overwrite, progress=advance
        )


def tile(
    images: PathArg | Sequence[PathArg] = (),
    masks: PathArg | Sequence[PathArg] = (),
    *,
    output: PathArg | None = None,
    clouds: Sequence[str] = (),
    unpaired: Literal["error", "skip"] = "error",
    catalog: Catalog | PathArg | None = None,
    dataset: str | None = None,
    config: PathArg | None = None,
    overwrite: bool = False,
    progress: ProgressFactory = no_progress,
    command: str | None = None,
    **settings: Any,
) -> TileStore:
    """Cut scenes and their masks into a Zarr tile store (``geotiler tile``).

    With ``images`` (files, folders or globs) and ``output`` no catalog is needed; without images
    the catalog's dataset is tiled (the catalog is looked up as the CLI does when not given).

    Args:
        images: Scene files, folders or globs, paired with ``masks`` by file stem.
        masks: Mask files, folders or globs; one mask with several images makes them seasons.
        output: The store to write (default: the catalog's ``work/<dataset>/tiles.zarr``).
        clouds: Cloud masks, ``"SCENE=FILE"`` or a bare file with one scene.
        unpaired: Images or masks without a partner: ``"error"`` or ``"skip"``.
        catalog: A :class:`~geotiler.catalog.Catalog` or its YAML path.
        dataset: The catalog's dataset (default: its default dataset).
        config: Pipeline YAML whose ``tile`` section supplies settings.
        overwrite: Replace an existing store geotiler wrote.
        progress: Progress factory ``(label, total, unit) -> context(advance)``.
        command: The command line recorded in the store's attributes.
        **settings: Fields of :class:`geotiler.tiles.settings.TileSettings` (``size``,
            ``overlap``, ``filters``, ``split``, ``balance``, ``seed``, ``aoi``, ``classes``...).

    Returns:
        The complete store, open for reading.

    Examples:
        >>> store = geotiler.tile("scene.tif", "mask.tif", output="tiles.zarr", size=64)
        >>> store.attrs.decisions.summary["kept"]
    """
    from geotiler.tiles.run import run_tile
    from geotiler.tiles.settings import TileSettings

    pipeline = load_pipeline(config)
    name = dataset or pipeline.get("dataset")
    image_list, mask_list = _paths(images), _paths(masks)
    if isinstance(settings.get("filters"), list):
        settings["filters"] = tuple(settings["filters"])
    resolved = resolve_settings(TileSettings, stage="tile", cli=settings, pipeline=pipeline)
    cat = _catalog(catalog) if catalog is not None or not image_list or output is None else None
    return run_tile(
        cat, name, resolved, images=image_list, masks=mask_list, clouds=clouds,
        unpaired=unpaired, output=output, overwrite=overwrite, progress=progress,
        command=command or "geotiler.tile(...)",
    )  # fmt: skip


def train(
    store: PathArg | TileStore | None = None,
    output: PathArg | None = None,
    *,
    model: str | PathArg | None = None,
    resume: PathArg | None = None,
    catalog: Catalog | PathArg | None = None,
    dataset: str | None = None,
    config: PathArg | None = None,
    overwrite: bool = False,
    callbacks: Callbacks | None = None,
    **settings: Any,
) -> TrainResult:
    """Train a segmentation model on a tile store (``geotiler train``).

    Settings come from ``settings``, then the ``config`` pipeline's ``train`` section, then the
    model preset's training defaults; resuming continues a run folder with its own settings.

    Args:
        store: The tile store (a path or an open store; default: the catalog dataset's).
        output: The run folder (default: the catalog's ``work/<dataset>/run``).
        model: A preset name (``unet-tiny``, ``unet-resnet34``...) or a preset YAML.
        resume: A run folder to continue from its ``last.pt`` (then ``output`` is that folder).
        catalog: A :class:`~geotiler.catalog.Catalog` or its YAML path, for the defaults.
        dataset: The catalog's dataset.
        config: Pipeline YAML whose ``train`` section supplies settings.
        overwrite: Replace an existing run folder geotiler wrote.
        callbacks: Progress hooks (:class:`geotiler.train.trainer.Callbacks`).
        **settings: Fields of :class:`geotiler.train.settings.TrainSettings` (``epochs``,
            ``lr``, ``batch_size``, ``loss``, ``device``, ``seed``...).

    Returns:
        The run folder, epochs run, the best epoch and its scores.

    Examples:
        >>> run = geotiler.train("tiles.zarr", "run", model="unet-tiny", epochs=5)
        >>> run.best.miou, run.run_dir / "best.pt"
    """
    from geotiler.errors import InputError
    from geotiler.train.checkpoint import read_checkpoint
    from geotiler.train.settings import TrainSettings, preset_defaults
    from geotiler.train.trainer import train as run_training

    pipeline = load_pipeline(config)
    name = dataset or pipeline.get("dataset")
    cli = dict(settings, model=str(model) if model is not None else None)
    base: dict[str, Any]
    store_path: PathArg | None = getattr(store, "path", None) or store  # type: ignore[assignment]
    out = Path(output) if output is not None else None
    if resume is not None:
        if out is not None and out.resolve() != Path(resume).resolve():
            raise InputError("give either --resume RUN_DIR or -o RUN_DIR, not both")
        previous = read_checkpoint(Path(resume) / "last.pt")
        base, out = dict(previous["settings"]), Path(resume)
        store_path = store_path or Path(previous["store"])
    else:
        base = preset_defaults(cli["model"] or (pipeline.get("train") or {}).get("model"))
    resolved = resolve_settings(
        TrainSettings, stage="train", cli=cli, pipeline=pipeline, dataset_defaults=base
    )
    if store_path is None or out is None:
        cat = _catalog(catalog)
        store_path = store_path or cat.output_path("tile", name)
        out = out or cat.output_path("train", name)
    return run_training(
        store_path, out, resolved, resume=resume is not None, overwrite=overwrite,
        callbacks=callbacks,
    )  # fmt: skip


def predict(
    scenes: PathArg | Sequence[PathArg],
    output: PathArg,
    *,
    model: PathArg | TorchPredictor | OnnxPredictor,
    classes: Sequence[str | int] | None = None,
    min_confidence: float | None = None,
    bands: Sequence[str] | None = None,
    src_nodata: float | None = None,
    dst_nodata: int | None = None,
    confidence: PathArg | None = None,
    probabilities: PathArg | None = None,
    clouds: Sequence[str] = (),
    detect_clouds: bool = False,
    allow_unfinished: bool = False,
    overwrite: bool = False,
    config: PathArg | None = None,
    progress: ProgressFactory = no_progress,
    **settings: Any,
) -> list[PredictResult]:
    """Predict land-cover maps of scenes of any size (``geotiler predict``).

    One scene gives one map at ``output``; several scenes (or a folder, or a glob) with a folder
    ``output`` give ``output/<name>.tif`` each; several seasons of one grid with a ``.tif``
    output give one map fused from the seasons that see each pixel clear of clouds.

    Args:
        scenes: Scene files, folders or globs.
        output: The map (``.tif``) or a folder of maps.
        model: A checkpoint (``.pt``), TorchScript (``.ts``) or ONNX file, or a loaded
            predictor (:func:`geotiler.inference.load_predictor`) to reuse across calls.
        classes: Map only these classes (names or ids); other pixels are nodata.
        min_confidence: Leave pixels whose top probability is below this as nodata.
        bands: The scenes' band names in file order, when the files do not name them.
        src_nodata: The scenes' nodata value, overriding the files' (``--src-nodata``): a
            pixel equal to it in any band is nodata.
        dst_nodata: The maps' nodata value (``--dst-nodata``; default: the class table's, or
            255); not a class's id.
        confidence: Also write the top probability here (float32 GeoTIFF).
        probabilities: Also write per-class probabilities here (uint8, value / 254).
        clouds: Cloud masks, ``"SCENE=FILE"`` or a bare file with one scene.
        detect_clouds: Spectral cloud test in scenes without a cloud mask.
        allow_unfinished: Accept a checkpoint of a run that did not finish.
        overwrite: Replace existing maps geotiler wrote.
        config: Pipeline YAML whose ``predict`` section supplies settings.
        progress: Progress factory ``(label, total, unit) -> context(advance)``.
        **settings: Fields of :class:`geotiler.predict.PredictSettings` (``overlap``,
            ``batch_size``, ``tta``, ``cog``, ``device``, ``creation_options``: GDAL
            creation options as with ``--co``, e.g. ``{"COMPRESS": "ZSTD"}``).

    Returns:
        One result per map written: path, grid, pixels per class, tiles, seconds.

    Examples:
        >>> [result] = geotiler.predict("scene.tif", "map.tif", model="run/best.pt")
        >>> result.class_pixels
    """
    from geotiler.outputs import check_not_input
    from geotiler.predict import PredictSettings
    from geotiler.predict_many import PredictOptions, run_predict

    resolved = resolve_settings(
        PredictSettings, stage="predict", cli=settings, pipeline=load_pipeline(config)
    )
    if isinstance(model, str | PathLike):
        from geotiler.inference import load_predictor

        for target in (output, confidence, probabilities):
            if target is not None:
                check_not_input(target, [model])
        predictor = load_predictor(model, device=resolved.device, allow_unfinished=allow_unfinished)
    else:
        predictor = model
    table = predictor.classes
    options = PredictOptions(
        overlap_px=resolved.overlap,
        batch_size=resolved.batch_size,
        class_ids=[table.resolve(str(c).strip()) for c in classes] if classes else None,
        min_confidence=min_confidence,
        bands=list(bands) if bands else None,
        detect_clouds=detect_clouds,
        tta=resolved.tta,
        cog=resolved.cog,
        creation_options=resolved.creation_options,
        src_nodata=src_nodata,
        dst_nodata=dst_nodata,
        overwrite=overwrite,
    )
    _, results = run_predict(
        _paths(scenes), output, predictor=predictor, classes=table, options=options,
        confidence=confidence, probabilities=probabilities, clouds=clouds, progress=progress,
    )  # fmt: skip
    return results


def evaluate(
    prediction: PathArg,
    truth: PathArg,
    output: PathArg,
    *,
    scene: PathArg | None = None,
    classes: ClassTable | None = None,
    overwrite: bool = False,
    progress: ProgressFactory = no_progress,
) -> EvaluateResult | ManyResult:
    """Score a map against a reference mask (``geotiler evaluate``).

    A reference on a finer, aligned grid is mode-rescaled onto the map's grid first. A folder or
    glob of maps is scored against a folder or glob of masks paired by file stem: per pair and
    overall.

    Args:
        prediction: The predicted class map, or a folder or glob of maps.
        truth: The reference mask, or a folder or glob of masks.
        output: The report folder to write (metrics.json, confusion matrix, PNGs).
        scene: A scene for the quick-look's RGB panel (one pair only).
        classes: The class table (default: the map's own).
        overwrite: Replace a report folder geotiler wrote.
        progress: Progress factory ``(label, total, unit) -> context(advance)``.

    Returns:
        The report folder, ``metrics`` (``miou``, ``pixel_accuracy``, ``macro_f1``, per class)
        and the files written.

    Examples:
        >>> report = geotiler.evaluate("map.tif", "mask_10m.tif", "report")
        >>> report.metrics["miou"]
    """
    import glob

    from geotiler.grid import Grid

    if any(Path(p).is_dir() or glob.has_magic(str(p)) for p in (prediction, truth)):
        from geotiler.evaluate_many import evaluate_many

        return evaluate_many([prediction], [truth], output, classes=classes, overwrite=overwrite)
    from geotiler.evaluate import evaluate as run_evaluate

    rows = Grid.from_raster(prediction).rows
    with progress("evaluate", rows, "rows") as advance:
        return run_evaluate(
            prediction, truth, output, classes=classes, scene=scene, rescale=mode_rescale,
            progress=advance, overwrite=overwrite,
        )  # fmt: skip


def mode_rescale(truth: Path, grid: Any, out: Path) -> Path:
    """The rescale hook evaluate uses: a finer reference mode-rescaled onto ``grid``."""
    from geotiler.rescale import rescale

    return rescale(truth, grid, out, method="mode", overwrite=True).path
