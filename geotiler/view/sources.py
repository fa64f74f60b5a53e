"""What ``geotiler view`` shows: scenes, map, confidence, probabilities, reference, tile store.

:func:`resolve_sources` is the one place that decides the defaults (the catalog's dataset, its work
folder's outputs) and checks every input before the server starts. A folder given as a scene is
searched for the usual outputs by name and for scenes (rasters of two or more bands).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import rasterio

from geotiler.catalog import Catalog, ClassTable
from geotiler.errors import CatalogError, InputError, RasterError

log = logging.getLogger(__name__)

CORRECTIONS_NAME = "corrections.gpkg"
REFERENCE_MODEL = "demo-unet-tiny.pt"
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
_ROLE_PREFIXES = {
    "map": ("landcover", "map", "prediction"),
    "confidence": ("confidence",),
    "probabilities": ("probabilities", "probs"),
    "truth": ("mask", "truth", "reference", "labels"),
}


@dataclass(frozen=True)
class ViewSources:
    """The files one ``geotiler view`` session may read, by role.

    Attributes:
        scenes: Scene name (season) -> image file, in display order.
        map: The predicted class map.
        confidence: Max-probability raster (``predict --confidence``).
        probabilities: Per-class probabilities (``predict --probabilities``).
        truth: Reference mask on the scene grid.
        store: Tile store (outlines, verdicts, splits).
        classes: Class table for colours and names.
        corrections: GeoPackage the page writes corrections to.
        models: Name -> checkpoint offered for predicting uploaded scenes.
        run: Training run (``last.pt``) that the page's fine-tune button continues.
    """

    scenes: dict[str, Path]
    classes: ClassTable
    corrections: Path
    map: Path | None = None
    confidence: Path | None = None
    probabilities: Path | None = None
    truth: Path | None = None
    store: Path | None = None
    models: dict[str, Path] = field(default_factory=dict)
    run: Path | None = None

    def with_prediction(
        self, scene: Path, name: str, output: Path, probabilities: Path | None
    ) -> ViewSources:
        """These sources showing an uploaded ``scene`` and the map predicted for it."""
        return replace(
            self,
            scenes={name: scene, **self.scenes},
            map=output,
            corrections=output.parent / CORRECTIONS_NAME,
            confidence=None,
            probabilities=probabilities,
            truth=None,
            store=None,
            run=None,
        )

    def files(self) -> list[Path]:
        """Every raster file of these sources."""
        found = [*self.scenes.values(), self.map, self.confidence, self.probabilities, self.truth]
        return [p for p in found if p is not None]


def resolve_sources(
    catalog: Catalog,
    dataset: str | None,
    *,
    scenes: Sequence[Path] = (),
    map_path: Path | None = None,
    store: Path | None = None,
    confidence: Path | None = None,
    probabilities: Path | None = None,
    truth: Path | None = None,
    corrections: Path | None = None,
    run: Path | None = None,
) -> ViewSources:
    """The sources of a view: CLI paths first, then the dataset's files and outputs.

    Raises:
        InputError: a file is missing or not a raster, or there is no scene at all.
    """
    found: dict[str, Path | None] = {
        "map": map_path,
        "confidence": confidence,
        "probabilities": probabilities,
        "truth": truth,
    }
    scene_files: dict[str, Path] = {}
    for given in scenes:
        if given.is_dir():
            store = store or _scan_folder(given, scene_files, found)
        else:
            scene_files[_unique(given.stem, scene_files)] = given
    if not scenes:
        scene_files, store = _from_catalog(catalog, dataset, found, store)
    if not scene_files:
        raise InputError(
            "no scene to show: give scene files or a folder (`geotiler view scene.tif`)"
        )
    for path in [*scene_files.values(), *(p for p in found.values() if p is not None)]:
        _check_raster(path)
    if store is not None and not store.exists():
        raise InputError(f"{store}: tile store not found; make it with `geotiler tile`")
    classes = _class_table(catalog, dataset, found["map"], store)
    where = found["map"].parent if found["map"] else next(iter(scene_files.values())).parent
    return ViewSources(
        scenes=scene_files,
        classes=classes,
        corrections=corrections or where / CORRECTIONS_NAME,
        map=found["map"],
        confidence=found["confidence"],
        probabilities=found["probabilities"],
        truth=found["truth"],
        store=store,
        models=find_models(catalog, dataset, extra=[where]),
        run=run or _find_run(catalog, dataset, where),
    )


def _from_catalog(
    catalog: Catalog, dataset: str | None, found: dict[str, Path | None], store: Path | None
) -> tuple[dict[str, Path], Path | None]:
    from geotiler.synthetic import ensure_generated

    ensure_generated(catalog, dataset)
    scenes = catalog.scene_paths(dataset)
    work = catalog.work_dir(dataset)
    defaults = {
        "map": catalog.output_path("predict", dataset),
        "truth": catalog.output_path("rescale", dataset),
        "confidence": work / "confidence.tif",
        "probabilities": work / "probabilities.tif",
    }
    for role, path in defaults.items():
        if found[role] is None and path.is_file():
            found[role] = path
    tiles = catalog.output_path("tile", dataset)
    if store is None and tiles.exists():
        store = tiles
    return scenes, store


def _find_run(catalog: Catalog, dataset: str | None, where: Path) -> Path | None:
    """A run folder with a ``last.pt``: ``run/`` beside the map, else the dataset's."""
    candidates = [where / "run"]
    with contextlib.suppress(CatalogError):
        candidates.append(catalog.output_path("train", dataset))
    return next((c for c in candidates if (c / "last.pt").is_file()), None)


def _scan_folder(
    folder: Path, scenes: dict[str, Path], found: dict[str, Path | None]
) -> Path | None:
    """Outputs by name and scenes (2+ bands) in ``folder`` and its subfolders; the store."""
    candidates = sorted(
        (
            p
            for pattern in ("*", "*/*")
            for p in folder.glob(pattern)
            if p.suffix.lower() in RASTER_SUFFIXES and p.is_file()
        ),
        key=lambda p: (len(p.relative_to(folder).parts), p.name),  # the folder's own files first
    )
    for path in candidates:
        stem = path.stem.lower()
        role = next((r for r, keys in _ROLE_PREFIXES.items() if stem.startswith(keys)), None)
        if role is not None:
            if found[role] is None:
                found[role] = path
            continue
        if stem.startswith("clouds"):
            continue
        try:
            with rasterio.open(path) as dataset:
                bands = dataset.count
        except rasterio.errors.RasterioIOError:
            continue
        if bands >= 2:
            scenes[_unique(path.stem, scenes)] = path
    stores = sorted(folder.glob("*.zarr"))
    return stores[0] if stores else None


def _unique(name: str, taken: dict[str, Path]) -> str:
    name = name.removeprefix("scene_")
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def _check_raster(path: Path) -> None:
    if not path.is_file() and not str(path).startswith("/vsi"):
        raise RasterError(f"{path}: file not found")
    try:
        with rasterio.open(path):
            pass
    except rasterio.errors.RasterioIOError as exc:
        raise RasterError(f"{path}: not a readable raster ({exc})") from None


def _class_table(
    catalog: Catalog, dataset: str | None, map_path: Path | None, store: Path | None
) -> ClassTable:
    """The map's own class table, else the store's, else the dataset's."""
    if map_path is not None:
        from geotiler.io import read_class_table

        with rasterio.open(map_path) as raster:
            table = read_class_table(raster)
        if table is not None:
            return table
    if store is not None:
        from geotiler.tiles.store import read_attrs

        attrs = read_attrs(store)
        if attrs is not None:
            return attrs.classes
    return catalog.dataset_classes(dataset)


def reference_model() -> Path:
    """The small checkpoint shipped with geotiler (trained on the demo dataset)."""
    return (
        Path(str(resources.files("geotiler"))) / "data" / "models" / "reference" / REFERENCE_MODEL
    )


def find_models(
    catalog: Catalog, dataset: str | None, *, extra: Sequence[Path] = ()
) -> dict[str, Path]:
    """Checkpoints to offer for uploads: runs of the work folder, then the reference model."""
    models: dict[str, Path] = {}
    folders = [*extra]
    with contextlib.suppress(CatalogError):
        folders.append(catalog.work_dir(dataset))
    for folder in folders:
        for checkpoint in sorted(folder.glob("*/best.pt")) + sorted(folder.glob("best.pt")):
            label = f"{checkpoint.parent.name}/best.pt"
            models.setdefault(label, checkpoint)
    reference = reference_model()
    if reference.is_file():
        models[f"reference ({REFERENCE_MODEL})"] = reference
    return models
