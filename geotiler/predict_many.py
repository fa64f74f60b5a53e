"""Predicting many scenes in one process: one model load, one map per input in an output folder.

``geotiler predict IMAGES... -o OUT_DIR`` (a folder, a glob or several files) writes
``OUT_DIR/<scene name>.tif`` for each input, where the scene names are the ones the tile stage
gives (file stems, made unique with their folders when stems repeat). Confidence and probability
rasters, when asked for, go to their own folders under the same names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geotiler.catalog import ClassTable
from geotiler.errors import InputError
from geotiler.output_kinds import WHAT, recognise
from geotiler.predict import (
    Predictor,
    PredictResult,
    check_overlap,
    count_tiles,
    predict_scene,
)
from geotiler.predict_engine import check_output_options, map_nodata
from geotiler.progress import ProgressFactory, no_progress
from geotiler.tiles.scenes import Scene, expand_paths, parse_cloud_masks, resolve_scenes

MAP_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class PredictJob:
    """One scene to predict and where its outputs go."""

    scene: Scene
    output: Path
    confidence: Path | None = None
    probabilities: Path | None = None
    clouds: Path | None = None


Mode = Literal["one", "many", "fuse"]


def predict_mode(inputs: Sequence[str | PathLike[str]], output: str | PathLike[str]) -> Mode:
    """``one`` map of one scene, ``many`` maps (one per scene: a folder, a glob, or a folder
    output), or one map ``fuse``d from several files of one grid (seasons) into a ``.tif``.

    Raises:
        InputError: a scene that does not exist, or a folder or glob of scenes into one ``.tif``.
    """
    expand_paths(inputs, what="scene")  # a missing file is named as such, not taken for a glob
    files = all(Path(p).is_file() for p in inputs)
    to_file = Path(output).suffix.lower() in MAP_SUFFIXES and not Path(output).is_dir()
    if not to_file:
        return "many"
    if not files:
        raise InputError(
            f"{output}: a folder or glob of scenes gives one map each; pass an output folder "
            "(-o maps/), or name the season files to fuse into one map"
        )
    return "one" if len(inputs) == 1 else "fuse"


def plan_jobs(
    inputs: Sequence[str | PathLike[str]],
    out_dir: str | PathLike[str],
    *,
    confidence: str | PathLike[str] | None = None,
    probabilities: str | PathLike[str] | None = None,
    clouds: Sequence[str] = (),
) -> list[PredictJob]:
    """One job per scene of ``inputs`` (files, folders, globs), named as the tile stage names them.

    ``clouds`` are ``--clouds`` values (``SCENE=FILE``, or a bare ``FILE`` for one scene).

    Raises:
        InputError: no image, or an output folder that is one of the input folders.
    """
    scenes = resolve_scenes(inputs)
    folder = Path(out_dir)
    found = recognise(folder) if folder.is_dir() else None
    if found is not None:
        raise InputError(
            f"{folder}: is {WHAT[found]}, not a folder of maps; choose another -o (maps go to "
            "a new folder, or one of your own: nothing in it but the maps is touched)"
        )
    sources = {s.image.resolve().parent for s in scenes}
    if folder.resolve() in sources:
        raise InputError(
            f"{folder}: is the folder of the input images; choose another output folder"
        )

    def beside(root: str | PathLike[str] | None, scene: Scene) -> Path | None:
        return None if root is None else Path(root) / f"{scene.name}.tif"

    masks = parse_cloud_masks(clouds, [s.name for s in scenes])
    return [
        PredictJob(
            scene,
            folder / f"{scene.name}.tif",
            beside(confidence, scene),
            beside(probabilities, scene),
            masks.get(scene.name),
        )
        for scene in scenes
    ]


def count_job_tiles(jobs: Sequence[PredictJob], tile_px: int, overlap_px: int | None) -> int:
    """Tiles over every job (a progress total)."""
    return sum(count_tiles(job.scene.grid, tile_px, overlap_px) for job in jobs)


@dataclass(frozen=True)
class PredictOptions:
    """How every map of a run is predicted (the settings :func:`predict_scene` takes)."""

    overlap_px: int | None = None
    batch_size: int = 8
    class_ids: Sequence[int] | None = None
    min_confidence: float | None = None
    bands: Sequence[str] | None = None
    detect_clouds: bool = False
    tta: bool = False
    cog: bool = False
    creation_options: Mapping[str, str] | None = None
    src_nodata: float | None = None
    dst_nodata: int | None = None
    overwrite: bool = False


def run_predict(
    inputs: Sequence[str | PathLike[str]],
    output: str | PathLike[str],
    *,
    predictor: Predictor,
    classes: ClassTable,
    options: PredictOptions,
    confidence: str | PathLike[str] | None = None,
    probabilities: str | PathLike[str] | None = None,
    clouds: Sequence[str] = (),
    progress: ProgressFactory | None = None,
) -> tuple[Mode, list[PredictResult]]:
    """Predict ``inputs`` into ``output`` as :func:`predict_mode` says: one map, one per scene,
    or seasons fused into one map."""
    mode = predict_mode(inputs, output)
    jobs = plan_jobs(
        inputs, output, confidence=confidence, probabilities=probabilities, clouds=clouds
    )
    if mode != "many":
        jobs = [
            replace(
                job,
                output=Path(output),
                confidence=_path(confidence),
                probabilities=_path(probabilities),
            )
            for job in jobs
        ]
    check_overlap(predictor.tile_size, options.overlap_px)  # before a progress bar draws
    targets = {"labels": output, "confidence": confidence, "probabilities": probabilities}
    check_output_options(
        options.creation_options, targets, cog=options.cog, classes=predictor.num_classes
    )
    if options.dst_nodata is not None:
        map_nodata(classes, np.array(classes.ids), options.dst_nodata)
    total = count_job_tiles(jobs, predictor.tile_size, options.overlap_px)
    with (progress or no_progress)("predict", total, "tiles") as advance:
        if mode == "fuse":
            result = predict_scene(
                [job.scene.image for job in jobs],
                output,
                clouds=[job.clouds for job in jobs],
                confidence=confidence,
                probabilities=probabilities,
                progress=advance,
                **_arguments(predictor, classes, options),
            )
            return mode, [result]
        return mode, [
            predict_scene(
                job.scene.image,
                job.output,
                clouds=[job.clouds],
                confidence=job.confidence,
                probabilities=job.probabilities,
                progress=advance,
                **_arguments(predictor, classes, options),
            )
            for job in _with_folders(jobs)
        ]


def _arguments(
    predictor: Predictor, classes: ClassTable, options: PredictOptions
) -> dict[str, Any]:
    return {"predictor": predictor, "classes": classes, **asdict(options)}


def _with_folders(jobs: Sequence[PredictJob]) -> Iterator[PredictJob]:
    for job in jobs:
        for path in (job.output, job.confidence, job.probabilities):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        yield job


def _path(value: str | PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)
