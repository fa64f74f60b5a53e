"""The whole chain for one dataset: rescale -> tile -> train -> predict -> evaluate.

Each stage calls the same library function as its command, with settings resolved as everywhere
(pipeline YAML section > catalog > default). After a stage succeeds, a stamp
``<work_dir>/.stages/<stage>.json`` records a fingerprint of its settings, its input files (size
and modification time) and the fingerprints of the stages before it. A stage whose output exists
and whose fingerprint is unchanged is skipped, so a re-run only redoes what a change affects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from geotiler.catalog import Catalog
from geotiler.config import StageSettings, resolve_settings
from geotiler.errors import CatalogError
from geotiler.grid import Grid
from geotiler.progress import ProgressFactory, no_progress

log = logging.getLogger(__name__)

StageName = Literal["rescale", "tile", "train", "predict", "evaluate"]
STAGES: tuple[StageName, ...] = ("rescale", "tile", "train", "predict", "evaluate")


@dataclass
class StageReport:
    stage: StageName
    status: Literal["ran", "skipped", "not needed"]
    seconds: float
    output: Path
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineReport:
    dataset: str
    stages: list[StageReport] = field(default_factory=list)


def select_stages(start: str | None = None, only: Sequence[str] = ()) -> list[StageName]:
    """The stages to force: ``only`` those, or all from ``start`` on (others run if out of date)."""
    for name in [*(only or ()), *([start] if start else [])]:
        if name not in STAGES:
            raise CatalogError(f"unknown stage {name!r} (stages: {', '.join(STAGES)})")
    if only:
        return [s for s in STAGES if s in only]
    if start:
        return list(STAGES[STAGES.index(start) :])
    return []


def validate_pipeline(catalog: Catalog, pipeline: dict[str, Any]) -> None:
    """Resolve every stage's settings, so a typo fails before any stage runs."""
    name = pipeline.get("dataset") or catalog.default_dataset
    catalog.dataset(name)
    for runner in _RUNNERS.values():
        runner.settings(catalog, name, pipeline)


def run_pipeline(
    catalog: Catalog,
    pipeline: dict[str, Any],
    *,
    dataset: str | None = None,
    force: Sequence[StageName] = (),
    only: Sequence[StageName] = (),
    progress: ProgressFactory = no_progress,
    on_stage: Callable[[StageReport], None] | None = None,
) -> PipelineReport:
    """Run the stages of ``pipeline`` for ``dataset``; ``only`` restricts, ``force`` re-runs."""
    name = dataset or pipeline.get("dataset") or catalog.default_dataset
    validate_pipeline(catalog, {**pipeline, "dataset": name})
    from geotiler.synthetic import ensure_generated

    ensure_generated(catalog, name)
    report = PipelineReport(dataset=name)
    upstream = ""
    for stage in STAGES:
        if only and stage not in only:
            upstream = _stamp(catalog, name, stage).get("fingerprint", upstream)
            continue
        runner = _RUNNERS[stage]
        if not runner.needed(catalog, name):
            output = catalog.output_path(stage, name)
            report.stages.append(StageReport(stage, "not needed", 0.0, output))
            if on_stage is not None:
                on_stage(report.stages[-1])
            continue
        settings = runner.settings(catalog, name, pipeline)
        inputs = runner.inputs(catalog, name)
        output = catalog.output_path(stage, name)
        fingerprint = _fingerprint(stage, settings, inputs, upstream)
        started = time.perf_counter()
        if (
            stage not in force
            and output.exists()
            and _stamp(catalog, name, stage).get("fingerprint") == fingerprint
        ):
            entry = StageReport(stage, "skipped", 0.0, output)
        else:
            _clear_stamp(catalog, name, stage)
            details = runner.run(catalog, name, settings, output, progress)
            entry = StageReport(stage, "ran", time.perf_counter() - started, output, details)
            _write_stamp(catalog, name, stage, fingerprint, settings)
        report.stages.append(entry)
        if on_stage is not None:
            on_stage(entry)
        upstream = fingerprint
    return report


# -- fingerprints -------------------------------------------------------------------------------


def _fingerprint(stage: str, settings: StageSettings, inputs: Sequence[Path], upstream: str) -> str:
    files = []
    for path in inputs:
        stat = path.stat() if path.exists() else None
        files.append(
            [str(path), stat.st_size if stat else None, stat.st_mtime_ns if stat else None]
        )
    payload = {"stage": stage, "settings": settings.model_dump(mode="json"), "inputs": files}
    payload["upstream"] = upstream
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _stamp_path(catalog: Catalog, name: str, stage: str) -> Path:
    return catalog.work_dir(name) / ".stages" / f"{stage}.json"


def _stamp(catalog: Catalog, name: str, stage: str) -> dict[str, Any]:
    path = _stamp_path(catalog, name, stage)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _clear_stamp(catalog: Catalog, name: str, stage: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        _stamp_path(catalog, name, stage).unlink()


def _write_stamp(
    catalog: Catalog, name: str, stage: str, fingerprint: str, settings: StageSettings
) -> None:
    path = _stamp_path(catalog, name, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"fingerprint": fingerprint, "settings": settings.model_dump(mode="json")}
    temporary = path.with_suffix(".partial")
    temporary.write_text(json.dumps(body, indent=2), encoding="utf-8")
    os.replace(temporary, path)


# -- the stages ---------------------------------------------------------------------------------


class _Stage:
    def needed(self, catalog: Catalog, name: str) -> bool:
        return True

    def settings(self, catalog: Catalog, name: str, pipeline: dict[str, Any]) -> StageSettings:
        raise NotImplementedError

    def inputs(self, catalog: Catalog, name: str) -> list[Path]:
        return []

    def run(
        self,
        catalog: Catalog,
        name: str,
        settings: Any,
        output: Path,
        progress: ProgressFactory,
    ) -> dict[str, Any]:
        raise NotImplementedError


def _first_scene(catalog: Catalog, name: str) -> Path:
    scenes = catalog.scene_paths(name)
    if not scenes:
        raise CatalogError(f"{catalog.where}: dataset {name!r} has no scenes")
    return next(iter(scenes.values()))


class _Rescale(_Stage):
    def needed(self, catalog: Catalog, name: str) -> bool:
        # Pairs of many scenes have their masks resampled by the tile stage, pair by pair.
        return not _many_scenes(catalog, name)

    def settings(self, catalog: Catalog, name: str, pipeline: dict[str, Any]) -> StageSettings:
        from geotiler.rescale import RescaleSettings

        return resolve_settings(RescaleSettings, stage="rescale", pipeline=pipeline)

    def inputs(self, catalog: Catalog, name: str) -> list[Path]:
        mask = catalog.mask_path(name)
        if mask is None:
            raise CatalogError(f"{catalog.where}: dataset {name!r} has no mask to rescale")
        return [mask, _first_scene(catalog, name)]

    def run(
        self, catalog: Catalog, name: str, settings: Any, output: Path, progress: ProgressFactory
    ) -> dict[str, Any]:
        from geotiler.rescale import rescale_with_settings, target_grid

        mask, scene = self.inputs(catalog, name)
        table = catalog.dataset_classes(name)
        source_grid = Grid.from_raster(mask)
        if settings.factor or settings.resolution:
            target = target_grid(
                source_grid, factor=settings.factor, resolution=settings.resolution
            )
        else:
            target = Grid.from_raster(scene)
        with progress("rescale", source_grid.rows, "rows") as advance:
            result = rescale_with_settings(
                mask, target, output, settings, classes=table, overwrite=True, progress=advance
            )
        return {"source Mpx/s": round(result.source_px / max(result.seconds, 1e-9) / 1e6, 1)}


class _Tile(_Stage):
    def settings(self, catalog: Catalog, name: str, pipeline: dict[str, Any]) -> StageSettings:
        from geotiler.tiles.settings import TileSettings

        return resolve_settings(TileSettings, stage="tile", pipeline=pipeline)

    def inputs(self, catalog: Catalog, name: str) -> list[Path]:
        if _many_scenes(catalog, name):
            from geotiler.tiles.scenes import catalog_scenes

            scenes = catalog_scenes(catalog, name)
            return [p for s in scenes for p in (s.image, s.mask) if p is not None]
        return [
            *catalog.scene_paths(name).values(),
            *catalog.cloud_mask_paths(name).values(),
            catalog.output_path("rescale", name),
        ]

    def run(
        self, catalog: Catalog, name: str, settings: Any, output: Path, progress: ProgressFactory
    ) -> dict[str, Any]:
        from geotiler.tiles.run import run_tile

        store = run_tile(
            catalog, name, settings, output=output, overwrite=True, progress=progress,
            command=f"geotiler run --dataset {name}",
        )  # fmt: skip
        decisions = store.attrs.decisions
        summary = decisions.summary if decisions is not None else {}
        return {"tiles kept": summary.get("kept"), "dropped": summary.get("dropped", {})}


def _many_scenes(catalog: Catalog, name: str) -> bool:
    """Whether the dataset is a folder of image/mask pairs (each pair on its own grid)."""
    return catalog.dataset(name).images_glob is not None


class _Train(_Stage):
    def settings(self, catalog: Catalog, name: str, pipeline: dict[str, Any]) -> StageSettings:
        from geotiler.train.settings import TrainSettings, preset_defaults

        base = preset_defaults((pipeline.get("train") or {}).get("model"))
        return resolve_settings(
            TrainSettings, stage="train", pipeline=pipeline, dataset_defaults=base
        )

    def inputs(self, catalog: Catalog, name: str) -> list[Path]:
        return [catalog.output_path("tile", name) / "zarr.json"]

    def run(
        self, catalog: Catalog, name: str, settings: Any, output: Path, progress: ProgressFactory
    ) -> dict[str, Any]:
        from geotiler.train.trainer import Callbacks, train

        # Epochs when they are given; under a time budget the bar fills when training ends.
        with progress("train", settings.epochs or 1, "epochs") as advance:
            callbacks = Callbacks(
                on_epoch_end=lambda _report: advance(1) if settings.epochs else None
            )
            result = train(
                catalog.output_path("tile", name), output, settings, overwrite=True,
                callbacks=callbacks,
            )  # fmt: skip
            if not settings.epochs:
                advance(1)
        details: dict[str, Any] = {
            "val mIoU": round(result.best.miou, 3),
            "best epoch": result.best_epoch,
        }
        if result.comparison:
            details["pixel baseline val mIoU"] = round(result.comparison["pixel-gbm"], 3)
            details["predicts with"] = result.chosen
        return details


class _Predict(_Stage):
    def settings(self, catalog: Catalog, name: str, pipeline: dict[str, Any]) -> StageSettings:
        from geotiler.predict import PredictSettings

        return resolve_settings(PredictSettings, stage="predict", pipeline=pipeline)

    def inputs(self, catalog: Catalog, name: str) -> list[Path]:
        checkpoint = catalog.output_path("train", name) / "best.pt"
        if _many_scenes(catalog, name):
            return [*(s.image for s in _held_out(catalog, name)), checkpoint]
        return [_first_scene(catalog, name), checkpoint]

    def run(
        self, catalog: Catalog, name: str, settings: Any, output: Path, progress: ProgressFactory
    ) -> dict[str, Any]:
        from geotiler.inference import load_predictor
        from geotiler.predict_many import PredictOptions, run_predict

        *scenes, checkpoint = self.inputs(catalog, name)
        predictor = load_predictor(checkpoint, device=settings.device)
        options = PredictOptions(
            overlap_px=settings.overlap, batch_size=settings.batch_size, tta=settings.tta,
            cog=settings.cog, creation_options=settings.creation_options, overwrite=True,
        )  # fmt: skip
        _, results = run_predict(
            [str(s) for s in scenes], output, predictor=predictor, classes=predictor.classes,
            options=options, progress=progress,
        )  # fmt: skip
        tiles, seconds = sum(r.tiles for r in results), sum(r.seconds for r in results)
        rate = round(tiles / max(seconds, 1e-9), 1)
        return {"maps": len(results), "tiles": tiles, "tiles/s": rate}


def _held_out(catalog: Catalog, name: str) -> list[Any]:
    """The scenes to map and score: those of the store's test split (else val, else all)."""
    from geotiler.tiles.scenes import catalog_scenes
    from geotiler.tiles.store import TileStore

    scenes = catalog_scenes(catalog, name)
    store_path = catalog.output_path("tile", name)
    if not store_path.exists():
        return scenes
    index = TileStore.open(store_path).index
    for split in ("test", "val"):
        chosen = set(index.scene[(index.split == split) & (index.verdict == "keep")])
        if chosen and not chosen & set(index.scene[index.split == "train"]):
            return [s for s in scenes if s.name in chosen]
    return scenes


class EvaluateSettings(StageSettings):
    quicklook: bool = True


class _Evaluate(_Stage):
    def settings(self, catalog: Catalog, name: str, pipeline: dict[str, Any]) -> StageSettings:
        return resolve_settings(EvaluateSettings, stage="evaluate", pipeline=pipeline)

    def inputs(self, catalog: Catalog, name: str) -> list[Path]:
        if _many_scenes(catalog, name):
            masks = [s.mask for s in _held_out(catalog, name) if s.mask is not None]
            return [catalog.output_path("predict", name), *masks]
        return [catalog.output_path("predict", name), catalog.output_path("rescale", name)]

    def run(
        self, catalog: Catalog, name: str, settings: Any, output: Path, progress: ProgressFactory
    ) -> dict[str, Any]:
        prediction, *truths = self.inputs(catalog, name)
        if _many_scenes(catalog, name):
            from geotiler.evaluate_many import evaluate_many

            many = evaluate_many([prediction], truths, output, overwrite=True)
            return {"mIoU": round(many.metrics["miou"], 3), "pairs": many.metrics["pairs"]}
        from geotiler.evaluate import evaluate

        rows = Grid.from_raster(prediction).rows
        with progress("evaluate", rows, "rows") as advance:
            result = evaluate(
                prediction, truths[0], output, scene=_first_scene(catalog, name),
                progress=advance, overwrite=True,
            )  # fmt: skip
        return {"mIoU": round(result.metrics["miou"], 3), "report": str(output)}


_RUNNERS: dict[StageName, _Stage] = {
    "rescale": _Rescale(),
    "tile": _Tile(),
    "train": _Train(),
    "predict": _Predict(),
    "evaluate": _Evaluate(),
}
