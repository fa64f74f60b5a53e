"""Predicting many scenes in one process: one model load, one map per input in an output folder.

``geotiler predict IMAGES... -o OUT_DIR`` (a folder, a glob or several files) writes
``OUT_DIR/<scene name>.tif`` for each input, where the scene names are the ones the tile stage
gives (file stems, made unique with their folders when stems repeat). Confidence and probability
rasters, when asked for, go to their own folders under the same names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from geotiler.catalog import ClassTable
from geotiler.errors import InputError
from geotiler.predict import Predictor, PredictResult, count_tiles, predict_scene
from geotiler.tiles.scenes import Scene, resolve_scenes

MAP_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class PredictJob:
    """One scene to predict and where its outputs go."""

    scene: Scene
    output: Path
    confidence: Path | None = None
    probabilities: Path | None = None


def is_many(inputs: Sequence[str | PathLike[str]], output: str | PathLike[str]) -> bool:
    """Whether the inputs (several files, a folder or a glob) or a folder output ask for a map
    per scene rather than one map.

    Raises:
        InputError: several inputs into one ``.tif`` (one map per input needs a folder).
    """
    single = len(inputs) == 1 and Path(inputs[0]).is_file()
    to_file = Path(output).suffix.lower() in MAP_SUFFIXES and not Path(output).is_dir()
    if single:
        return not to_file
    if to_file:
        raise InputError(
            f"{output}: several scenes give one map each; pass an output folder (-o maps/)"
        )
    return True


def plan_jobs(
    inputs: Sequence[str | PathLike[str]],
    out_dir: str | PathLike[str],
    *,
    confidence: str | PathLike[str] | None = None,
    probabilities: str | PathLike[str] | None = None,
) -> list[PredictJob]:
    """One job per scene of ``inputs`` (files, folders, globs), named as the tile stage names them.

    Raises:
        InputError: no image, or an output folder that is one of the input folders.
    """
    scenes = resolve_scenes(inputs)
    folder = Path(out_dir)
    sources = {s.image.resolve().parent for s in scenes}
    if folder.resolve() in sources:
        raise InputError(
            f"{folder}: is the folder of the input images; choose another output folder"
        )

    def beside(root: str | PathLike[str] | None, scene: Scene) -> Path | None:
        return None if root is None else Path(root) / f"{scene.name}.tif"

    return [
        PredictJob(
            scene,
            folder / f"{scene.name}.tif",
            beside(confidence, scene),
            beside(probabilities, scene),
        )
        for scene in scenes
    ]


def count_job_tiles(jobs: Sequence[PredictJob], tile_px: int, overlap_px: int | None) -> int:
    """Tiles over every job (a progress total)."""
    return sum(count_tiles(job.scene.grid, tile_px, overlap_px) for job in jobs)


def predict_many(
    jobs: Sequence[PredictJob],
    *,
    predictor: Predictor,
    classes: ClassTable,
    overlap_px: int | None = None,
    batch_size: int = 8,
    class_ids: Sequence[int] | None = None,
    min_confidence: float | None = None,
    bands: Sequence[str] | None = None,
    tta: bool = False,
    cog: bool = False,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[PredictResult]:
    """Predict every job with one loaded ``predictor`` (see :func:`predict_scene`)."""
    results = []
    for job in jobs:
        for path in (job.output, job.confidence, job.probabilities):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        results.append(
            predict_scene(
                job.scene.image,
                job.output,
                predictor=predictor,
                classes=classes,
                overlap_px=overlap_px,
                batch_size=batch_size,
                class_ids=class_ids,
                min_confidence=min_confidence,
                bands=bands,
                tta=tta,
                confidence=job.confidence,
                probabilities=job.probabilities,
                cog=cog,
                overwrite=overwrite,
                progress=progress,
            )
        )
    return results
