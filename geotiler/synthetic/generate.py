"""Writing a generated dataset: a 1 m class mask, 10 m scenes per season and their cloud masks.

The landscape's geometry is laid out once; pixels are rendered window by window on the fine grid
(in parallel, written in order), so memory depends on the window size, not on the extent. Outputs
go through :func:`geotiler.io.atomic_output`. Scenes are valid everywhere (the satellite images the
unmapped area too); their nodata value 0 never occurs. The mask is 0 outside the mapped area.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geotiler.catalog import ClassInfo, ClassTable, SynthSpec
from geotiler.errors import InputError
from geotiler.grid import Grid
from geotiler.io import atomic_output
from geotiler.synthetic.clouds import CLOUD_VALUES, plan_clouds
from geotiler.synthetic.landscape import CLASS_IDS, build_landscape
from geotiler.synthetic.render import RenderedWindow, Renderer
from geotiler.synthetic.spectra import BANDS, SCALE, SEASONS, TONE_AMPLITUDE, SceneStyle
from geotiler.synthetic.writer import MASK_BLOCK_PX, SCENE_BLOCK_PX, open_outputs, write_metadata

log = logging.getLogger(__name__)

MaskLayout = Literal["tiled", "strip"]
Progress = Callable[[int], None]

GENERATOR_VERSION = 2
"""Bumped whenever the same spec would give different pixels (so cached datasets regenerate)."""
CRS_CODE = "EPSG:32631"
ORIGIN = (240000.0, 4780000.0)
SCENE_PIXEL_M = 10.0
MIN_SCENE_PX = 16
CLOUD_TABLE = ClassTable(
    name="cloudmask",
    description="cloud mask of a generated scene",
    nodata=None,
    classes=(
        ClassInfo(id=0, name="clear", color="#000000"),
        ClassInfo(id=1, name="cloud", color="#ffffff"),
        ClassInfo(id=2, name="shadow", color="#555555"),
    ),
)


@dataclass(frozen=True)
class FileNames:
    """File names inside the output folder (defaults match the catalog's ``demo`` entry)."""

    mask: str = "mask_1m.tif"
    scenes: Mapping[str, str] = field(
        default_factory=lambda: {s: f"scene_{s}.tif" for s in SEASONS}
    )
    cloud_masks: Mapping[str, str] = field(
        default_factory=lambda: {s: f"clouds_{s}.tif" for s in SEASONS}
    )
    manifest: str = "manifest.json"


@dataclass(frozen=True)
class SynthResult:
    """What :func:`generate` wrote, with the class shares of the mask and the cloud cover."""

    mask: Path
    scenes: dict[str, Path]
    cloud_masks: dict[str, Path]
    manifest: Path
    mask_grid: Grid
    scene_grid: Grid
    class_shares: dict[int, float]
    cloud_fractions: dict[str, dict[str, float]]
    seconds: float

    @property
    def files(self) -> list[Path]:
        return [self.mask, *self.scenes.values(), *self.cloud_masks.values(), self.manifest]


def default_window_px(factor: int) -> int:
    """A window side (fine pixels) near 2560 whose scene part fills whole scene and mask blocks."""
    base = math.lcm(factor * SCENE_BLOCK_PX, MASK_BLOCK_PX)
    return base * max(1, round(2560 / base))


def generate(
    out_dir: str | os.PathLike[str],
    *,
    scene_px: int = 1024,
    factor: int = 10,
    seed: int = 0,
    cloud_fraction: float = 0.06,
    mask_layout: MaskLayout = "tiled",
    classes: ClassTable | None = None,
    names: FileNames | None = None,
    window_px: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> SynthResult:
    """Generate the mini-Catalonia dataset into ``out_dir``; same arguments, same bytes.

    Args:
        out_dir: folder to write into (created if missing).
        scene_px: side of the square scenes in 10 m pixels.
        factor: the mask grid refines the scene grid this many times (10: a 1 m mask).
        seed: the landscape, spectra noise and clouds follow from it.
        cloud_fraction: about this share of each scene is flagged cloud (0: no clouds).
        mask_layout: ``tiled`` (512 px deflate tiles) or ``strip`` (uncompressed one-row strips,
            like the real ICGC mask).
        classes: the class table written into the mask (``catalonia12`` when None).
        names: output file names.
        window_px: side of the rendering window in mask pixels, a multiple of ``factor``.
        workers: windows rendered at once (default: the CPU count, at most 4).
        overwrite: replace existing files.
        progress: called with the number of mask rows finished (fractions carried over).
    """
    started = time.perf_counter()
    spec = _spec(scene_px, factor, seed, cloud_fraction, mask_layout)
    names = names or FileNames()
    classes = classes or _catalonia12()
    window_px = window_px or default_window_px(factor)
    _validate(spec, names, classes, window_px)
    scene_grid = Grid(
        CRS.from_user_input(CRS_CODE),
        Affine(SCENE_PIXEL_M, 0, ORIGIN[0], 0, -SCENE_PIXEL_M, ORIGIN[1]),
        (scene_px, scene_px),
    )
    mask_grid = scene_grid.zoom_in(factor)
    renderer = _renderer(spec, scene_grid, mask_grid, names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = _paths(out, names)
    with contextlib.ExitStack() as outputs:
        temporary = {
            key: outputs.enter_context(atomic_output(p, overwrite=overwrite, kind="synthetic"))
            for key, p in paths.items()
        }
        with open_outputs(temporary, spec, scene_grid, mask_grid, progress=progress) as sink:
            windows = list(mask_grid.windows(window_px, window_px))
            _stream(renderer, windows, sink, workers=workers or min(4, os.cpu_count() or 1))
        write_metadata(temporary, spec.model_dump(), classes, CLOUD_TABLE)
        shares, cloud_fractions = sink.class_shares(), sink.cloud_fractions()
        manifest = _manifest(spec, classes, names, scene_grid, mask_grid, shares, cloud_fractions)
        temporary["manifest"].write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return SynthResult(
        mask=paths["mask"],
        scenes={s: paths[f"scene:{s}"] for s in names.scenes},
        cloud_masks={s: paths[f"clouds:{s}"] for s in names.cloud_masks},
        manifest=paths["manifest"],
        mask_grid=mask_grid,
        scene_grid=scene_grid,
        class_shares=shares,
        cloud_fractions=cloud_fractions,
        seconds=time.perf_counter() - started,
    )


def _spec(
    scene_px: int, factor: int, seed: int, cloud_fraction: float, mask_layout: str
) -> SynthSpec:
    if scene_px < MIN_SCENE_PX:
        raise InputError(f"scene size {scene_px} px is too small; use at least {MIN_SCENE_PX}")
    if factor < 1:
        raise InputError(f"refinement factor must be >= 1, got {factor}")
    if not 0 <= cloud_fraction < 1:
        raise InputError(f"cloud fraction must be in [0, 1), got {cloud_fraction}")
    if mask_layout not in ("tiled", "strip"):
        raise InputError(f"mask layout must be 'tiled' or 'strip', got {mask_layout!r}")
    # SynthSpec's lower bound on scene_px is for catalogued datasets; tests use smaller ones.
    return SynthSpec.model_construct(
        seed=seed,
        scene_px=scene_px,
        factor=factor,
        cloud_fraction=cloud_fraction,
        mask_layout=mask_layout,
    )


def _validate(spec: SynthSpec, names: FileNames, classes: ClassTable, window_px: int) -> None:
    if window_px < spec.factor or window_px % spec.factor:
        raise InputError(
            f"window size {window_px} px must be a positive multiple of the factor {spec.factor}"
        )
    for season in {*names.scenes, *names.cloud_masks}:
        if season not in SEASONS:
            raise InputError(
                f"no spectra for season {season!r}; the generator knows {', '.join(SEASONS)}"
            )
    missing = [c for c in CLASS_IDS if c not in classes.ids]
    if missing or classes.nodata != 0:
        raise InputError(
            f"class table {classes.name!r} does not fit the generator: it needs ids 1-12 with "
            f"nodata 0 (like catalonia12); missing {missing}, nodata {classes.nodata}"
        )


def _catalonia12() -> ClassTable:
    from importlib import resources

    from geotiler.catalog import Catalog

    packaged = resources.files("geotiler") / "data" / "data_catalog.yaml"
    return Catalog.load(str(packaged)).class_table("catalonia12")


def _renderer(spec: SynthSpec, scene_grid: Grid, mask_grid: Grid, names: FileNames) -> Renderer:
    extent_m = scene_grid.cols * SCENE_PIXEL_M
    landscape = build_landscape(
        extent_m,
        seed=spec.seed,
        origin=ORIGIN,
        crs=CRS_CODE,
        tone_amplitude=TONE_AMPLITUDE,
    )
    seasons = [s for s in SEASONS if s in names.scenes or s in names.cloud_masks]
    styles = tuple(
        SceneStyle.create(s, seed=spec.seed, season_index=SEASONS.index(s), extent_m=extent_m)
        for s in seasons
    )
    clouds = tuple(
        plan_clouds(extent_m, spec.cloud_fraction, seed=spec.seed, season_index=SEASONS.index(s))
        for s in seasons
    )
    log.info("landscape: %d features over %.0f m", len(landscape.features), extent_m)
    return Renderer(landscape, mask_grid, spec.factor, styles, clouds)


def _paths(out: Path, names: FileNames) -> dict[str, Path]:
    paths = {"mask": out / names.mask}
    paths.update({f"scene:{s}": out / n for s, n in names.scenes.items()})
    paths.update({f"clouds:{s}": out / n for s, n in names.cloud_masks.items()})
    paths["manifest"] = out / names.manifest
    if len(set(paths.values())) != len(paths):
        raise InputError(f"output file names repeat: {sorted(str(p.name) for p in paths.values())}")
    return paths


def _stream(
    renderer: Renderer,
    windows: list[Window],
    sink: Callable[[RenderedWindow], None],
    *,
    workers: int,
) -> None:
    """Render windows ``workers`` at a time (threads) and hand them to ``sink`` in order."""
    if workers <= 1:
        for window in windows:
            sink(renderer.render(window))
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[Any] = []
        for window in windows:
            if len(pending) == workers:
                sink(pending.pop(0).result())
            pending.append(pool.submit(renderer.render, window))
        for future in pending:
            sink(future.result())


def _manifest(
    spec: SynthSpec,
    classes: ClassTable,
    names: FileNames,
    scene_grid: Grid,
    mask_grid: Grid,
    shares: dict[int, float],
    cloud_fractions: dict[str, dict[str, float]],
) -> dict[str, Any]:
    return {
        "generator": "geotiler.synthetic",
        "generator_version": GENERATOR_VERSION,
        "spec": spec.model_dump(),
        "class_table": classes.name,
        "files": {
            "mask": names.mask,
            "scenes": dict(names.scenes),
            "cloud_masks": dict(names.cloud_masks),
        },
        "scene_grid": _grid_json(scene_grid),
        "mask_grid": _grid_json(mask_grid),
        "scene_bands": list(BANDS),
        "scene_scale": f"reflectance x {SCALE}",
        "scene_nodata": 0,
        "scene_note": "scenes are valid everywhere; 0 never occurs; the mask is 0 where unmapped",
        "cloud_mask_values": {str(k): v for k, v in CLOUD_VALUES.items()},
        "class_shares": {str(k): round(v, 6) for k, v in shares.items()},
        "cloud_fractions": cloud_fractions,
    }


def _grid_json(grid: Grid) -> dict[str, Any]:
    return {
        "crs": grid.require_crs("the demo generator").to_string(),
        "transform": list(grid.transform)[:6],
        "shape": list(grid.shape),
    }
