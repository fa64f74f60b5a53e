"""Generated catalog datasets: made into their data folder atomically, never replaced silently.

:func:`ensure_demo` is what every command that needs the demo dataset calls first: a no-op when
the folder holds the files and a ``manifest.json`` written for the same spec; it generates the
dataset into a temporary sibling folder and moves it into place when none of its files is there;
and when files are there that were made otherwise (another spec, another generator version, or
not by geotiler) it stops with an error naming both, rather than regenerating the user's files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

from geotiler import outputs
from geotiler.catalog import Catalog, ClassTable, Dataset, SynthSpec
from geotiler.errors import CatalogError
from geotiler.locks import sweep_partials, writer_lock
from geotiler.synthetic.generate import (
    GENERATOR_VERSION,
    FileNames,
    Progress,
    SynthResult,
    generate,
)

log = logging.getLogger(__name__)
GENERATE_WAIT_S = 1800


def file_names(catalog: Catalog, name: str) -> FileNames:
    """The output names a generated dataset's catalog entry asks for."""
    dataset = catalog.dataset(name)
    where = f"{catalog.where}: datasets.{name}"
    if dataset.mask is None or not dataset.scenes:
        raise CatalogError(f"{where}: a generated dataset needs a mask and scenes file name")
    for value in [dataset.mask, *dataset.scenes.values(), *dataset.cloud_masks.values()]:
        if Path(value).is_absolute() or "://" in value or len(Path(value).parts) != 1:
            raise CatalogError(
                f"{where}: generated files are written into the data folder, so {value!r} must "
                "be a plain file name"
            )
    return FileNames(
        mask=dataset.mask, scenes=dict(dataset.scenes), cloud_masks=dict(dataset.cloud_masks)
    )


def dataset_paths(target: Path, names: FileNames) -> dict[str, Path]:
    """``mask``, ``scene_<season>``, ``clouds_<season>`` and ``manifest`` paths in ``target``."""
    paths = {"mask": target / names.mask}
    paths.update({f"scene_{s}": target / n for s, n in names.scenes.items()})
    paths.update({f"clouds_{s}": target / n for s, n in names.cloud_masks.items()})
    paths["manifest"] = target / names.manifest
    return paths


def check_outputs(target: Path, names: FileNames, *, overwrite: bool) -> None:
    """Refuse to replace existing dataset files unless ``overwrite``, and files geotiler did not
    generate ever."""
    for path in dataset_paths(target, names).values():
        outputs.check_output(path, "synthetic", overwrite=overwrite)


def is_current(target: Path, spec: SynthSpec, names: FileNames, classes: ClassTable) -> bool:
    """Whether ``target`` holds every file, generated for this spec, names and class table."""
    paths = dataset_paths(target, names)
    if not all(path.is_file() for path in paths.values()):
        return False
    try:
        manifest = json.loads(paths["manifest"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(
        manifest.get("generator_version") == GENERATOR_VERSION
        and manifest.get("spec") == spec.model_dump()
        and manifest.get("class_table") == classes.name
        and manifest.get("files")
        == {
            "mask": names.mask,
            "scenes": dict(names.scenes),
            "cloud_masks": dict(names.cloud_masks),
        }
    )


def synthesize(
    target: str | os.PathLike[str],
    spec: SynthSpec,
    *,
    names: FileNames | None = None,
    classes: ClassTable | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> SynthResult:
    """Generate a dataset per ``spec`` into a temporary folder, then move it into ``target``.

    Other files in an existing ``target`` are left alone; the manifest is moved last, so an
    interrupted move leaves a folder that :func:`is_current` rejects.
    """
    folder = Path(target)
    names = names or FileNames()
    check_outputs(folder, names, overwrite=overwrite)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(folder):
        check_outputs(folder, names, overwrite=overwrite)
        return _synthesize(folder, spec, names, classes, progress)


def _synthesize(
    folder: Path,
    spec: SynthSpec,
    names: FileNames,
    classes: ClassTable | None,
    progress: Progress | None,
) -> SynthResult:
    """Generate into a staging folder beside ``folder`` and move in (its lock is held)."""
    sweep_partials(folder.parent, held=folder)
    staging = folder.with_name(f".{folder.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        result = generate(
            staging,
            scene_px=spec.scene_px,
            factor=spec.factor,
            seed=spec.seed,
            cloud_fraction=spec.cloud_fraction,
            mask_layout=spec.mask_layout,
            classes=classes,
            names=names,
            progress=progress,
        )
        _move_into_place(staging, folder, result)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _rebase(result, staging, folder)


def ensure_demo(
    catalog: Catalog, dataset_name: str | None = None, progress: Progress | None = None
) -> dict[str, Path]:
    """Generate a catalog's generated dataset (``demo`` by default) unless it is there already.

    Returns the paths by key: ``mask``, ``scene_<season>``, ``clouds_<season>``, ``manifest``.
    """
    name = dataset_name or catalog.default_dataset
    dataset: Dataset = catalog.dataset(name)
    if dataset.synthetic is None:
        raise CatalogError(
            f"{catalog.where}: dataset {name!r} is not generated (no 'synthetic:' entry); put its "
            f"files in {catalog.data_dir(name)}"
        )
    target = catalog.data_dir(name)
    names = file_names(catalog, name)
    classes = catalog.dataset_classes(name)
    if is_current(target, dataset.synthetic, names, classes):
        return dataset_paths(target, names)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Another command generating it first is waited for, then its result used.
    with writer_lock(target, wait_s=GENERATE_WAIT_S):
        if not is_current(target, dataset.synthetic, names, classes):
            _refuse_other_files(catalog, name, target, dataset.synthetic, names, classes)
            log.info("generating dataset %r into %s", name, target)
            _synthesize(target, dataset.synthetic, names, classes, progress)
    return dataset_paths(target, names)


def _refuse_other_files(
    catalog: Catalog,
    name: str,
    target: Path,
    spec: SynthSpec,
    names: FileNames,
    classes: ClassTable,
) -> None:
    """Stop when files of the dataset are there but were not generated for this catalog entry."""
    present = [p for p in dataset_paths(target, names).values() if p.exists()]
    if not present:
        return
    asked = f"{catalog.where}: datasets.{name}.synthetic"
    fix = (
        f"regenerate it with `geotiler synth --dataset {name} --overwrite`, or make the catalog "
        "entry match"
    )
    try:
        manifest = json.loads((target / names.manifest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("generator") != "geotiler.synthetic":
        raise CatalogError(
            f"{present[0]}: is there, but no manifest.json says geotiler generated it for "
            f"dataset {name!r} ({asked}); it is never replaced: move the files away or point "
            "the dataset elsewhere"
        )
    made, wanted = manifest.get("spec") or {}, spec.model_dump()
    differences = [
        f"{key}={made.get(key)!r} there vs {value!r} asked"
        for key, value in wanted.items()
        if made.get(key) != value
    ]
    if manifest.get("generator_version") != GENERATOR_VERSION:
        differences.append(
            f"generator version {manifest.get('generator_version')} there vs {GENERATOR_VERSION}"
        )
    if manifest.get("class_table") != classes.name:
        differences.append(
            f"class table {manifest.get('class_table')!r} there vs {classes.name!r} asked"
        )
    if not differences:
        differences.append("some of its files are missing or named otherwise")
    raise CatalogError(
        f"{target}: holds a dataset generated with other settings than {asked} "
        f"({'; '.join(differences)}); {fix}"
    )


def _move_into_place(staging: Path, target: Path, result: SynthResult) -> None:
    if not target.exists():
        try:
            os.replace(staging, target)
            return
        except OSError:  # another process created it meanwhile: fall back to file by file
            pass
    target.mkdir(parents=True, exist_ok=True)
    manifest = target / result.manifest.name
    manifest.unlink(missing_ok=True)
    for path in sorted(staging.iterdir()):
        if path.name != result.manifest.name:
            os.replace(path, target / path.name)
    os.replace(result.manifest, manifest)


def _rebase(result: SynthResult, old: Path, new: Path) -> SynthResult:
    def move(path: Path) -> Path:
        return new / path.relative_to(old)

    return dataclasses.replace(
        result,
        mask=move(result.mask),
        scenes={k: move(v) for k, v in result.scenes.items()},
        cloud_masks={k: move(v) for k, v in result.cloud_masks.items()},
        manifest=move(result.manifest),
    )


def ensure_generated(catalog: Catalog, dataset_name: str | None = None) -> None:
    """Generate a generated dataset's files if missing; a no-op for datasets of real files."""
    name = dataset_name or catalog.default_dataset
    if catalog.dataset(name).synthetic is not None:
        ensure_demo(catalog, name)
