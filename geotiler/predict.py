"""Whole-scene inference: a sliding window over a scene of any size into a georeferenced class map.

The scene (one season, or several seasons of one grid fused per pixel) is processed one band of
tile rows at a time (:mod:`geotiler.predict_engine`). Tiles overlap by ``overlap_px``; their
class probabilities are blended with a Hann window so tile borders leave no seams, and output rows
are written as soon as no later tile touches them. Memory is bounded by the tile size and the scene
width, never by the scene height. The last tile row and column are snapped to the scene's edge.

The model is anything that follows :class:`Predictor` (a torch checkpoint, an ONNX session), so
this module knows nothing of torch.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import Field, field_validator

from geotiler import StageModule
from geotiler.catalog import ClassTable
from geotiler.config import StageSettings
from geotiler.creation_options import normalise_creation_options
from geotiler.errors import InputError
from geotiler.grid import Grid
from geotiler.io import check_output, open_raster
from geotiler.limits import check_predict_memory
from geotiler.outputs import check_distinct

log = logging.getLogger(__name__)


class PredictSettings(StageSettings):
    """Settings of ``geotiler predict`` (pipeline section ``predict``)."""

    overlap: int | None = Field(default=None, ge=0, description="px; default a quarter tile")
    batch_size: int = Field(default=8, ge=1)
    tta: bool = False
    cog: bool = False
    device: str = "auto"
    creation_options: dict[str, str] = Field(
        default_factory=dict, description="GDAL creation options of every output (--co)"
    )

    @field_validator("creation_options", mode="before")
    @classmethod
    def _gdal_names(cls, value: Any) -> dict[str, str]:
        return normalise_creation_options(value)


class Predictor(Protocol):
    """A model ready for inference, with its input contract."""

    bands: tuple[str, ...]
    num_classes: int
    tile_size: int

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Raw scene values ``(N, B, S, S)`` float32 -> class probabilities ``(N, K, S, S)``."""
        ...


@dataclass(frozen=True)
class PredictResult:
    output: Path
    grid: Grid
    tiles: int
    seconds: float
    class_pixels: dict[int, int] = field(default_factory=dict)
    nodata_pixels: int = 0
    cloudy_pixels: int = 0
    """Pixels with imagery that no season saw clear of clouds (left nodata)."""


def tile_offsets(length_px: int, tile_px: int, stride_px: int) -> list[int]:
    """Tile starts along one axis: every ``stride_px``, the last one snapped to the edge."""
    if stride_px < 1:
        raise InputError(f"overlap must be smaller than the tile size ({tile_px} px)")
    if length_px <= tile_px:
        return [0]
    offsets = list(range(0, length_px - tile_px + 1, stride_px))
    if offsets[-1] + tile_px < length_px:
        offsets.append(length_px - tile_px)
    return offsets


def default_overlap(tile_px: int) -> int:
    """The overlap used when none is given: a quarter of the tile."""
    return tile_px // 4


def check_overlap(tile_px: int, overlap_px: int | None) -> int:
    """The overlap to use (a quarter tile when ``None``).

    Raises:
        InputError: not in ``[0, tile_px)``.
    """
    overlap = default_overlap(tile_px) if overlap_px is None else overlap_px
    if not 0 <= overlap < tile_px:
        raise InputError(
            f"--overlap must be in [0, {tile_px}) px (the model's tiles are {tile_px} px), got "
            f"{overlap}; pass a smaller --overlap, or none for a quarter tile"
        )
    return overlap


def count_tiles(grid: Grid, tile_px: int, overlap_px: int | None = None) -> int:
    """How many tiles :func:`predict_scene` runs over ``grid`` (for progress totals)."""
    overlap = default_overlap(tile_px) if overlap_px is None else overlap_px
    stride = max(tile_px - overlap, 1)
    return len(tile_offsets(grid.rows, tile_px, stride)) * len(
        tile_offsets(grid.cols, tile_px, stride)
    )


def blend_window(tile_px: int) -> np.ndarray:
    """A 2-D Hann weight, strictly positive so a pixel seen by one tile keeps that tile's value."""
    ramp = np.sin(np.pi * (np.arange(tile_px) + 0.5) / tile_px) ** 2
    return np.outer(ramp, ramp).astype(np.float32)


def d4_predict(predictor: Predictor, batch: np.ndarray) -> np.ndarray:
    """Test-time augmentation: the mean of the 8 flips/rotations, each mapped back."""
    total = np.zeros((batch.shape[0], predictor.num_classes, *batch.shape[2:]), np.float32)
    for k in range(4):
        for flip in (False, True):
            view = np.rot90(batch, k, axes=(2, 3))
            view = view[..., ::-1] if flip else view
            probs = predictor(np.ascontiguousarray(view))
            probs = probs[..., ::-1] if flip else probs
            total += np.rot90(probs, -k, axes=(2, 3))
    return total / 8


ScenePaths = str | PathLike[str] | Sequence[str | PathLike[str]]


def predict_scene(
    scene: ScenePaths,
    output: str | PathLike[str],
    *,
    predictor: Predictor,
    classes: ClassTable,
    overlap_px: int | None = None,
    batch_size: int = 8,
    class_ids: Sequence[int] | None = None,
    min_confidence: float | None = None,
    bands: Sequence[str] | None = None,
    clouds: Sequence[str | PathLike[str] | None] | None = None,
    detect_clouds: bool = False,
    tta: bool = False,
    confidence: str | PathLike[str] | None = None,
    probabilities: str | PathLike[str] | None = None,
    cog: bool = False,
    creation_options: Mapping[str, str] | None = None,
    src_nodata: float | None = None,
    dst_nodata: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PredictResult:
    """Predict a class map for ``scene`` on its exact grid and write it to ``output``.

    ``scene`` may be several seasons of one grid: their probabilities are fused per pixel from
    the seasons that see it clearly. ``clouds`` gives a cloud mask (1 cloud, 2 shadow) per season
    (None where there is none); ``detect_clouds`` applies the spectral test (bands B02, B03, B04)
    to seasons without one. Cloudy pixels are nodata unless another season sees them.

    ``overlap_px`` defaults to a quarter of the model's tile size. ``class_ids`` restricts the map
    to those classes: a pixel whose most probable class is another one is nodata (never forced
    into a listed class); so is a pixel whose top probability is below ``min_confidence``. Nodata
    pixels of the scene (every band nodata) are nodata in the map. The scene's bands are matched
    to the model's by name (the file's band descriptions, or ``bands``) and reordered; unnamed
    bands are taken in order; ``bands`` of 1-based numbers picks the file's bands by position, in
    the model's band order. ``src_nodata`` overrides the scenes' nodata value (a pixel equal to
    it in any band is nodata); ``dst_nodata`` is the map's (default: the class table's, or 255).
    ``creation_options`` (GDAL's, e.g. ``{"COMPRESS": "LZW"}``; the COG driver's with ``cog``)
    override geotiler's for every output.
    """
    from geotiler.predict_engine import Engine, Outputs, check_output_options

    started = time.perf_counter()
    paths = [scene] if isinstance(scene, str | PathLike) else list(scene)
    cloud_paths = list(clouds) if clouds is not None else [None] * len(paths)
    if len(cloud_paths) != len(paths):
        raise InputError(f"{len(cloud_paths)} cloud masks given for {len(paths)} scenes")
    chosen = _chosen_classes(classes, None, predictor.num_classes)
    keep = None if not class_ids else _chosen_classes(classes, class_ids, predictor.num_classes)
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise InputError(f"--min-confidence must be within 0..1, got {min_confidence}")
    check_distinct({"-o": output, "--confidence": confidence, "--probabilities": probabilities})
    targets = {"labels": output, "confidence": confidence, "probabilities": probabilities}
    check_output_options(creation_options, targets, cog=cog, classes=len(chosen))
    for path in (output, confidence, probabilities):
        if path is not None:
            check_output(
                path,
                overwrite=overwrite,
                kind="geotiff",
                inputs=[*paths, *(c for c in clouds or () if c)],
            )
    with contextlib.ExitStack() as stack:
        seasons = [
            _season(stack, path, cloud, predictor, bands, detect_clouds)
            for path, cloud in zip(paths, cloud_paths, strict=True)
        ]
        for season in seasons:
            season.nodata = src_nodata
        grid = _common_grid(seasons)
        check_predict_memory(
            str(paths[0]), cols=grid.cols, bands=len(predictor.bands) * len(seasons),
            classes=predictor.num_classes, tile_px=predictor.tile_size, batch=batch_size, tta=tta,
        )  # fmt: skip
        outputs = Outputs(
            grid, classes, chosen, output, confidence, probabilities, cog, overwrite,
            creation_options=creation_options, nodata=dst_nodata,
        )  # fmt: skip
        with outputs:
            engine = Engine(seasons, predictor, chosen, overlap_px, batch_size, tta, outputs)
            engine.select(keep=keep, min_confidence=min_confidence)
            tiles = engine.run(progress)
            if engine.valid_pixels == 0:  # raised inside, so no output is kept
                raise InputError(f"{paths[0]}: every pixel of the scene is nodata")
    return PredictResult(
        output=Path(output),
        grid=grid,
        tiles=tiles * len(seasons),
        seconds=time.perf_counter() - started,
        class_pixels=engine.class_pixels,
        nodata_pixels=grid.rows * grid.cols - sum(engine.class_pixels.values()),
        cloudy_pixels=engine.cloudy_pixels,
    )


def _season(
    stack: contextlib.ExitStack,
    path: str | PathLike[str],
    clouds: str | PathLike[str] | None,
    predictor: Predictor,
    bands: Sequence[str] | None,
    detect_clouds: bool,
) -> Any:
    from geotiler.predict_engine import Season
    from geotiler.tiles.read import VISIBLE_BANDS

    dataset = stack.enter_context(open_raster(path))
    season = Season(dataset, band_order(dataset, predictor, bands))
    if clouds is not None:
        mask = stack.enter_context(open_raster(clouds))
        if not Grid.from_dataset(mask).almost_equals(Grid.from_dataset(dataset)):
            raise InputError(
                f"{clouds}: the cloud mask is not on the grid of {path}; run `geotiler rescale "
                f"{clouds} --like {path}` first"
            )
        season.clouds = mask
    elif detect_clouds:
        names = [b.upper() for b in predictor.bands]
        if not all(b in names for b in VISIBLE_BANDS):
            raise InputError(
                f"{path}: the spectral cloud test needs bands {', '.join(VISIBLE_BANDS)}; the "
                f"model's are {', '.join(predictor.bands)}; give cloud masks with --clouds"
            )
        blue, green, red = (names.index(b) for b in VISIBLE_BANDS)
        season.visible = (blue, green, red)
    return season


def _common_grid(seasons: list[Any]) -> Grid:
    grid = Grid.from_dataset(seasons[0].dataset)
    for season in seasons[1:]:
        other = Grid.from_dataset(season.dataset)
        if not other.almost_equals(grid):
            raise InputError(
                f"{season.dataset.name}: not on the grid of {seasons[0].dataset.name} "
                f"({other.describe()} vs {grid.describe()}); seasons fused into one map must "
                "share a grid (or pass an output folder for one map each)"
            )
    return grid


def _chosen_classes(
    classes: ClassTable, class_ids: Sequence[int] | None, num_classes: int
) -> np.ndarray:
    ids = list(class_ids) if class_ids else classes.ids
    unknown = [i for i in ids if i not in classes.ids or i >= num_classes]
    if unknown:
        raise InputError(f"classes {unknown} are not classes of the model ({classes.name})")
    return np.array(sorted(set(ids)), dtype=np.int64)


def band_order(dataset: Any, predictor: Predictor, bands: Sequence[str] | None) -> list[int]:
    """The scene's band numbers (1-based) in the model's band order.

    Named bands (the file's descriptions, or ``bands``) are matched to the model's by name, case
    aside; a model trained on unnamed bands (``band1``...) and an unnamed scene go by position.

    Raises:
        InputError: ``bands`` of the wrong length, a model band the scene lacks, or unnamed bands
            of another count.
    """
    if bands is not None and all(str(b).strip().isdigit() for b in bands):
        return _by_number(dataset, predictor, [int(b) for b in bands])
    if bands is not None and len(bands) != dataset.count:
        raise InputError(
            f"{dataset.name}: --bands names {len(bands)} bands but the scene has {dataset.count}"
        )
    names = list(bands) if bands is not None else [d or "" for d in dataset.descriptions]
    wanted = list(predictor.bands)
    generic = all(re.fullmatch(r"band\d+", b) for b in wanted)
    if all(names) and not generic:
        at = {name.lower(): number for number, name in enumerate(names, start=1)}
        missing = [b for b in wanted if b.lower() not in at]
        if missing:
            raise InputError(
                f"{dataset.name}: the model needs bands {', '.join(wanted)}; the scene's bands are "
                f"{', '.join(names)} (missing {', '.join(missing)}); name the file's bands in "
                "order with --bands"
            )
        return [at[b.lower()] for b in wanted]
    if dataset.count != len(wanted):
        raise InputError(
            f"{dataset.name}: the scene has {dataset.count} bands but the model expects "
            f"{len(wanted)} ({', '.join(wanted)}); name them with --bands to pick by name"
        )
    return list(range(1, dataset.count + 1))


def _by_number(dataset: Any, predictor: Predictor, numbers: list[int]) -> list[int]:
    """``--bands 4,3,2``: the file's bands by 1-based number, one per model band, in its order."""
    wanted = list(predictor.bands)
    if len(numbers) != len(wanted):
        raise InputError(
            f"{dataset.name}: --bands gives {len(numbers)} band numbers but the model takes "
            f"{len(wanted)} bands ({', '.join(wanted)}): give one number per model band, in "
            "that order"
        )
    outside = [n for n in numbers if not 1 <= n <= dataset.count]
    if outside:
        raise InputError(
            f"{dataset.name}: --bands {outside[0]}: the scene has bands 1..{dataset.count}"
        )
    return numbers


# geotiler.predict(...) calls the API function (see geotiler.StageModule).
sys.modules[__name__].__class__ = StageModule
