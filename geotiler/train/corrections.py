"""Training on corrections drawn in ``geotiler view``: the active-learning loop.

:func:`append_corrected_tiles` rasterises the corrected polygons onto the store's grid, one tile
of the store's layout at a time (never the whole scene), and appends those tiles to the store
with ``source = corrected``, the ``train`` split and a higher sampling weight. Pixels outside every
polygon are nodata, so the loss learns only from what a person corrected. Corrected tiles from
an earlier call are replaced, never stacked. :func:`train_on_corrections` then fine-tunes a copy
of a run on the store, scores the model before and after on the corrected pixels and on the
untouched validation split, and predicts the scene again.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from affine import Affine

from geotiler.errors import InputError, StoreError
from geotiler.outputs import check_output, clear, writes

log = logging.getLogger(__name__)

CORRECTED = 1
"""``index/source`` code of a tile added from corrections (0: cut by ``geotiler tile``)."""
DEFAULT_WEIGHT_FACTOR = 4.0
FINE_TUNE_EPOCHS = 3
FINE_TUNE_LR_FACTOR = 0.3
"""Fine-tuning starts from a trained model: its full learning rate undid much of it (val mIoU
1.0 -> 0.5 on the test dataset), a third keeps it while the corrections are learnt."""
STAT_COLUMNS = ("scene", "row", "col", "valid_px", "cloudy_px", "class_counts")


@writes("store_path", "store", keep=True)  # one writer: two fine-tunes on a store never race
def append_corrected_tiles(
    store_path: str | PathLike[str],
    corrections: Any,
    *,
    weight_factor: float = DEFAULT_WEIGHT_FACTOR,
) -> np.ndarray:
    """Add one tile per scene and corrected tile position; returns the new tile ids.

    Args:
        store_path: A complete tile store (changed in place: tiles appended, index extended).
        corrections: GeoDataFrame with ``class_id`` and polygons (see ``geotiler.view``).
        weight_factor: Corrected tiles are drawn this many times as often as the most
            favoured training tile.

    Raises:
        InputError: no polygon touches the store's grid, or a class id is not in the store.
    """
    from geotiler.tiles.schema import SPLITS
    from geotiler.tiles.store import TileStore, mark_complete, write_decisions

    store = TileStore.open(store_path)
    size = store.tile_size
    frame = corrections
    unknown = sorted(set(int(c) for c in frame["class_id"]) - set(store.classes.ids))
    if unknown:
        raise InputError(f"corrections use class ids {unknown} that {store_path} does not know")
    tiled = int((store.sources != CORRECTED).sum())
    nodata = store.nodata if store.nodata is not None else 255
    images, masks = [], []
    stats: dict[str, list[Any]] = {name: [] for name in STAT_COLUMNS}
    for scene_id, name in enumerate(store.scenes):
        record = store.scene(name)
        grid = record.grid
        if grid.crs is None:
            continue  # corrections are drawn in a CRS; a pixel-grid scene cannot take them
        local = _in_grid_crs(frame, grid.crs)
        positions = _touched_positions(store, local, tiled, scene_id, grid)
        for row, col in positions:
            label = _rasterise(local, grid.transform, row, col, size, nodata)
            images.append(_read_window(record.image, row, col, size, store.image_dtype))
            masks.append(label)
            # Class counts are of labelled pixels only, as the tile stage counts them.
            counts = np.bincount(label[label != nodata], minlength=256)[: store.num_classes]
            for key, value in zip(
                STAT_COLUMNS,
                (scene_id, row, col, int((label != nodata).sum()), -1, counts),
                strict=True,
            ):
                stats[key].append(value)
    if not images:
        raise InputError(f"no corrected polygon falls on the tile grid of {store_path}")
    group = zarr.open_group(str(store_path), mode="r+")
    new_ids = _write_tiles(group, tiled, np.stack(images), np.stack(masks), stats)
    total = tiled + len(new_ids)
    verdict = np.concatenate([store.column("verdict")[:tiled], np.zeros(len(new_ids), np.uint8)])
    split = np.concatenate(
        [store.column("split")[:tiled], np.full(len(new_ids), SPLITS.index("train"), np.uint8)]
    )
    old_weight = store.column("weight")[:tiled].astype(np.float64)
    train = (verdict[:tiled] == 0) & (split[:tiled] == 0)
    top = float(old_weight[train].max()) if train.any() else 1.0
    weight = np.concatenate([old_weight, np.full(len(new_ids), weight_factor * top)])
    source = np.concatenate([np.zeros(tiled, np.uint8), np.full(len(new_ids), CORRECTED, np.uint8)])
    arrays = {"verdict": verdict, "split": split, "weight": weight, "source": source}
    write_decisions(group, store.decisions, arrays)
    mark_complete(group)
    log.info("%s: %d corrected tiles appended (%d tiles in all)", store_path, len(new_ids), total)
    return new_ids


def _in_grid_crs(corrections: Any, crs: Any) -> Any:
    if len(corrections) == 0:
        raise InputError("the corrections file has no polygon yet: draw some in `geotiler view`")
    if corrections.crs is None:
        raise InputError(
            "the corrections have no CRS (drawn on a scene without georeference); a tile store "
            "needs georeferenced corrections"
        )
    return corrections if corrections.crs == crs else corrections.to_crs(crs)


def _touched_positions(
    store: Any, frame: Any, tiled: int, scene_id: int, grid: Any
) -> list[tuple[int, int]]:
    """Tile positions (row, col) of one scene's layout whose square meets a polygon."""
    from shapely import box, intersects

    size = store.tile_size
    mine = store.column("scene")[:tiled] == scene_id
    rows, cols = store.column("row")[:tiled][mine], store.column("col")[:tiled][mine]
    unique = sorted(set(zip(rows.tolist(), cols.tolist(), strict=True)))
    union = frame.geometry.union_all()
    t = grid.transform
    touched = []
    for row, col in unique:
        left, top = t @ (col, row)
        right, bottom = t @ (col + size, row + size)
        square = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        if intersects(square, union) and square.intersection(union).area > 0:
            touched.append((int(row), int(col)))
    return touched


def _rasterise(
    frame: Any, transform: Affine, row: int, col: int, size: int, nodata: int
) -> np.ndarray:
    """The corrected class of each pixel of one tile (later polygons win), else ``nodata``."""
    from rasterio.features import rasterize

    shapes = [(geom, int(c)) for geom, c in zip(frame.geometry, frame["class_id"], strict=True)]
    return rasterize(
        shapes,
        out_shape=(size, size),
        transform=transform @ Affine.translation(col, row),
        fill=nodata,
        dtype="uint8",
    )


def _read_window(path: str, row: int, col: int, size: int, dtype: np.dtype) -> np.ndarray:
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(path) as dataset:
        data = dataset.read(window=Window(col, row, size, size), boundless=True, fill_value=0)
    return data.astype(dtype, copy=False)


def _write_tiles(
    group: Any, first: int, images: np.ndarray, masks: np.ndarray, stats: dict[str, list[Any]]
) -> np.ndarray:
    """Write tiles from id ``first`` on (dropping any beyond it); returns their ids."""
    total = first + len(images)
    for name, values in (("images", images), ("masks", masks)):
        array = group[name]
        array.resize((total, *array.shape[1:]))
        array[first:total] = values
    index = group["index"]
    pixels = images.reshape(len(images), images.shape[1], -1).astype(np.float64)
    stats["band_sum"] = list(pixels.sum(axis=2))
    stats["band_sumsq"] = list((pixels**2).sum(axis=2))
    for name, column in stats.items():
        array = index[name]
        array.resize((total, *array.shape[1:]))
        array[first:total] = np.asarray(column, dtype=array.dtype)
    return np.arange(first, total, dtype=np.int64)


@dataclass(frozen=True)
class CorrectionScores:
    """Scores of one model before or after fine-tuning."""

    corrected_accuracy: float
    """Share of corrected pixels that get the corrected class."""
    val_miou: float
    val_accuracy: float


@dataclass(frozen=True)
class CorrectionsResult:
    run_dir: Path
    tiles_added: int
    before: CorrectionScores
    after: CorrectionScores
    map: Path | None


def check_run_output(run: Path, output: Path, store: Path, *, overwrite: bool) -> None:
    """Whether ``output`` may take the fine-tuned run: not ``run`` or the store, and only ever a
    run folder geotiler wrote in its place (with ``overwrite``); checked before anything changes.
    """
    if output.resolve() == run.resolve():
        raise InputError(f"{output}: fine-tune into a new run folder, not into {run} itself")
    check_output(output, "run", overwrite=overwrite, inputs=[run, store])


def prepare_run(run: Path, output: Path) -> None:
    """Copy ``run``'s checkpoints and metrics into ``output`` (checked by
    :func:`check_run_output`; a previous run there is removed) so training resumes there."""
    clear(output, "run")
    output.mkdir(parents=True)
    for name in ("last.pt", "best.pt", "metrics.csv"):
        if (run / name).is_file():
            shutil.copy2(run / name, output / name)


def score_model(checkpoint: Path, store_path: Path, corrected: np.ndarray) -> CorrectionScores:
    """Accuracy on the corrected tiles' labelled pixels, mIoU and accuracy on the val split."""
    import torch

    from geotiler.inference import load_predictor
    from geotiler.tiles.store import TileStore
    from geotiler.train.metrics import confusion_matrix, scores_for_table

    predictor = load_predictor(checkpoint, device="cpu")
    store = TileStore.open(store_path)
    k, nodata = store.num_classes, store.nodata

    def matrix(ids: np.ndarray) -> np.ndarray:
        total = torch.zeros((k, k), dtype=torch.int64)
        for start in range(0, len(ids), 16):
            chunk = [store.read(int(i)) for i in ids[start : start + 16]]
            images = np.stack([c[0] for c in chunk]).astype(np.float32)
            masks = torch.from_numpy(np.stack([c[1] for c in chunk]).astype(np.int64))
            predicted = torch.from_numpy(predictor(images).argmax(axis=1))
            total += confusion_matrix(predicted, masks, k, nodata)
        return total.numpy()

    corrected_matrix = matrix(corrected)
    labelled = corrected_matrix.sum()
    accuracy = float(np.trace(corrected_matrix) / labelled) if labelled else float("nan")
    val = scores_for_table(matrix(store.indices("val")), store.classes)
    return CorrectionScores(accuracy, val.miou, val.pixel_accuracy)


def fine_tune_settings(run: str | PathLike[str], overrides: dict[str, Any] | None = None) -> Any:
    """The run's training settings for fine-tuning: 3 more epochs at a third of its rate.

    ``overrides`` (e.g. the command line's ``epochs``, ``lr``) win over both.
    """
    from geotiler.train.checkpoint import read_checkpoint
    from geotiler.train.settings import TrainSettings

    previous = dict(read_checkpoint(Path(run) / "last.pt")["settings"])
    lr = float(previous["lr"]) * FINE_TUNE_LR_FACTOR
    return TrainSettings.model_validate(
        {**previous, "epochs": FINE_TUNE_EPOCHS, "lr": lr, **(overrides or {})}
    )


def train_on_corrections(
    corrections: str | PathLike[str],
    run: str | PathLike[str],
    settings: Any,
    *,
    store: str | PathLike[str] | None = None,
    output: str | PathLike[str] | None = None,
    weight_factor: float = DEFAULT_WEIGHT_FACTOR,
    predict_to: str | PathLike[str] | None = None,
    overwrite: bool = False,
    callbacks: Any = None,
) -> CorrectionsResult:
    """Append corrected tiles, fine-tune a copy of ``run`` and predict the scene again.

    ``settings.epochs`` counts the epochs of the fine-tuning (added to those ``run`` did).
    The new run goes to ``output`` (default ``<run>-corrected``); the new map to ``predict_to``
    (default ``landcover.tif`` in the new run).
    """
    from geotiler.train.checkpoint import read_checkpoint
    from geotiler.train.trainer import train
    from geotiler.view.corrections import read_corrections

    run_dir = Path(run)
    previous = read_checkpoint(run_dir / "last.pt")
    store_path = Path(store or previous["store"])
    if not store_path.exists():
        raise StoreError(f"{store_path}: the run's tile store is gone; pass STORE")
    frame = read_corrections(corrections)
    out = Path(output) if output else run_dir.with_name(f"{run_dir.name}-corrected")
    target_map = Path(predict_to) if predict_to else out / "landcover.tif"
    check_run_output(run_dir, out, store_path, overwrite=overwrite)
    new_ids = append_corrected_tiles(store_path, frame, weight_factor=weight_factor)
    prepare_run(run_dir, out)
    before = score_model(run_dir / "last.pt", store_path, new_ids)
    done = int(previous["epoch"])
    tuned = settings.model_copy(update={"epochs": done + settings.epochs})
    train(store_path, out, tuned, resume=True, callbacks=callbacks)
    after = score_model(out / "last.pt", store_path, new_ids)
    return CorrectionsResult(
        out, len(new_ids), before, after, _predict_again(out, store_path, target_map, overwrite)
    )


def _predict_again(run: Path, store_path: Path, output: Path, overwrite: bool) -> Path | None:
    from geotiler.inference import load_predictor
    from geotiler.predict import predict_scene
    from geotiler.tiles.store import read_attrs

    attrs = read_attrs(store_path)
    scenes = [] if attrs is None else [record.image for record in attrs.scenes]
    if not scenes or not Path(scenes[0]).is_file():
        log.warning("%s: no scene file recorded; the map is not predicted again", store_path)
        return None
    predictor = load_predictor(run / "last.pt", device="cpu")
    predict_scene(
        scenes[0], output, predictor=predictor, classes=predictor.classes, overwrite=overwrite
    )
    return output
