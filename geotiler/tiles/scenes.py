"""Scenes: what every stage after rescale works on, and the one resolver that builds them.

A :class:`Scene` is one image with its mask, optional cloud mask, its own grid (or a plain pixel
grid for a chip without georeference) and a group: scenes that share a footprint (the seasons of
one place) share a group, so a split never separates them.

:func:`resolve_scenes` builds scenes from paths (files, folders or globs) and :func:`catalog_scenes`
from a catalog dataset. Images and masks are paired by file stem, compared without case and
without common suffixes (``_mask``, ``_label``, ``_gt``, ``_sat``...). Several images with a single
mask are the seasons of one grid (the Catalonia case). A dataset's own split (images under
``train/``, ``val/``, ``test/`` folders, or ``train.txt``/``val.txt``/``test.txt`` lists beside
them) is kept on the scene.
"""

from __future__ import annotations

import glob
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from geotiler.catalog import Catalog
from geotiler.errors import InputError, RasterError
from geotiler.grid import Grid
from geotiler.io import block_layout
from geotiler.tiles.files import open_file
from geotiler.tiles.schema import Split

log = logging.getLogger(__name__)

RASTER_SUFFIXES = frozenset(
    {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".img", ".vrt", ".bmp", ".gif", ".webp"}
)
PAIR_SUFFIXES = re.compile(
    r"([_\-. ](mask|masks|m|label|labels|lbl|gt|sat|image|img|rgb|ortho))+$", re.IGNORECASE
)
SPLIT_FOLDERS: dict[str, Split] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
Unpaired = Literal["error", "skip"]
SHOWN = 5


@dataclass(frozen=True)
class ImageInfo:
    """What the planner needs from an image besides its grid."""

    count: int
    dtype: str
    nodata: float | None
    blocks: tuple[int, int]
    descriptions: tuple[str, ...]

    @classmethod
    def of(cls, dataset: Any) -> ImageInfo:
        layout = block_layout(dataset)
        return cls(
            count=dataset.count,
            dtype=dataset.dtypes[0],
            nodata=dataset.nodata,
            blocks=(layout.block_rows, layout.block_cols),
            descriptions=tuple(d or "" for d in dataset.descriptions),
        )


def read_image(path: str | PathLike[str]) -> tuple[Grid, ImageInfo]:
    """An image's grid and :class:`ImageInfo`, from one open (chips pay each open per file).

    Raises:
        RasterError: the file is missing or not a raster.
    """
    with open_file(path) as dataset:
        return Grid.from_dataset(dataset), ImageInfo.of(dataset)


@dataclass(frozen=True)
class Scene:
    """One image, its mask and cloud mask, its grid and the group it belongs to."""

    name: str
    image: Path
    mask: Path | None
    grid: Grid
    group: str
    clouds: Path | None = None
    split: Split | None = None
    info: ImageInfo | None = field(default=None, compare=False, repr=False)
    """The image's bands, dtype, nodata and blocks when the resolver has read them already."""

    @classmethod
    def read(cls, name: str, image: Path, mask: Path | None, group: str, **kwargs: Any) -> Scene:
        """A scene whose grid and info are read from ``image`` (one open).

        Raises:
            RasterError: the image is missing or not a raster.
        """
        grid, info = read_image(image)
        return cls(name, image, mask, grid, group, info=info, **kwargs)


def expand_paths(specs: Sequence[str | PathLike[str]], *, what: str) -> list[Path]:
    """Files from files, folders (their rasters, sorted) and globs; remote paths pass through.

    Raises:
        InputError: a file that does not exist, or a folder or glob with no raster in it.
    """
    found: list[Path] = []
    for spec in specs:
        text = str(spec)
        path = Path(text)
        if "://" in text or text.startswith("/vsi"):
            found.append(path)
        elif path.is_dir():
            rasters = sorted(p for p in path.iterdir() if _is_raster(p))
            if not rasters:
                raise InputError(f"{path}: the {what} folder holds no raster files")
            found.extend(rasters)
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text) if _is_raster(Path(p)))
            if not matches:
                raise InputError(f"{text}: no {what} file matches")
            found.extend(matches)
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path}: {what} file not found")
    return found


def _is_raster(path: Path) -> bool:
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in RASTER_SUFFIXES
    )


def pair_key(path: Path) -> str:
    """A file's stem without case and common image/mask suffixes: ``Tile_3_mask`` -> ``tile_3``."""
    stem = PAIR_SUFFIXES.sub("", path.stem.lower())
    return stem or path.stem.lower()


def _keys(paths: Sequence[Path], depth: int) -> list[str]:
    """Pair keys with ``depth`` folders above the file's own folder (for repeating stems)."""
    keys = []
    for path in paths:
        above = [p.name.lower() for p in path.parents[1 : depth + 1]]
        keys.append("/".join([*reversed(above), pair_key(path)]))
    return keys


def _unique_keys(paths: Sequence[Path]) -> tuple[list[str], int]:
    """Pair keys made unique by adding as few parent folders as needed."""
    for depth in range(0, 4):
        keys = _keys(paths, depth)
        if len(set(keys)) == len(keys):
            return keys, depth
    repeated = sorted({k for k in _keys(paths, 0) if _keys(paths, 0).count(k) > 1})
    raise InputError(
        f"image file names repeat ({', '.join(repeated[:SHOWN])}); give files with distinct names"
    )


def resolve_scenes(
    images: Sequence[str | PathLike[str]],
    masks: Sequence[str | PathLike[str]] = (),
    *,
    clouds: Mapping[str, Path] | None = None,
    unpaired: Unpaired = "error",
    skipped: list[str] | None = None,
) -> list[Scene]:
    """Scenes from image and mask paths (files, folders, globs), paired by stem.

    One mask with several images makes them the seasons of one grid sharing that mask; several
    masks pair with images by stem (see the module docstring). ``clouds`` maps a scene name to its
    cloud mask. With a ``skipped`` list, images that cannot be opened are left out and named
    there instead of raising.

    Raises:
        InputError: no image, unpaired files (unless ``unpaired="skip"``), repeating names.
        RasterError: an image that cannot be opened (without ``skipped``).
    """
    image_paths = expand_paths(images, what="image")
    mask_paths = expand_paths(masks, what="mask") if masks else []
    if not image_paths:
        raise InputError("no image given: pass image files, folders or globs")
    if len(mask_paths) == 1:
        group = mask_paths[0].stem
        pairs: list[tuple[Path, Path | None, str]] = [
            (path, mask_paths[0], group) for path in image_paths
        ]
        names = _scene_names(image_paths)
    else:
        pairs, names = _pair(image_paths, mask_paths, unpaired)
    splits = _dataset_splits([image for image, _, _ in pairs])
    scenes = []
    for name, (image, mask, group) in zip(names, pairs, strict=True):
        try:
            scene = Scene.read(name, image, mask, group or name, split=splits.get(image))
        except RasterError as exc:
            if skipped is None:
                raise
            log.warning("skipped %s: %s", image, exc)
            skipped.append(name)
            continue
        scenes.append(scene)
    if not scenes:
        raise InputError("no image could be opened; see the warnings above")
    return attach_clouds(scenes, clouds or {})


def _distinct_stems(paths: Sequence[Path]) -> bool:
    return len({p.stem for p in paths}) == len(paths)


def _pair(
    images: list[Path], masks: list[Path], unpaired: Unpaired
) -> tuple[list[tuple[Path, Path | None, str]], list[str]]:
    if not masks:
        return [(image, None, "") for image in images], _scene_names(images)
    keys, depth = _unique_keys(images)
    mask_keys = _keys(masks, depth)
    by_key: dict[str, Path] = {}
    for key, path in zip(mask_keys, masks, strict=True):
        if key in by_key:
            raise InputError(f"{path}: masks {by_key[key].name} and {path.name} pair alike")
        by_key[key] = path
    lonely_images = [image for image, key in zip(images, keys, strict=True) if key not in by_key]
    lonely_masks = sorted(set(by_key) - set(keys))
    if lonely_images or lonely_masks:
        message = _unpaired_message(lonely_images, [by_key[k] for k in lonely_masks])
        if unpaired == "error":
            raise InputError(message + "; pair them by name or pass --unpaired skip")
        log.warning("%s: skipped", message)
    kept = [(image, key) for image, key in zip(images, keys, strict=True) if key in by_key]
    if not kept:
        raise InputError("no image has a mask of the same name; check the file names")
    names = _scene_names([image for image, _ in kept])
    return [(image, by_key[key], "") for image, key in kept], names


def _unpaired_message(images: list[Path], masks: list[Path]) -> str:
    parts = []
    for what, paths in (("image", images), ("mask", masks)):
        if paths:
            shown = ", ".join(str(p) for p in paths[:SHOWN])
            more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
            parts.append(f"{len(paths)} {what}(s) without a {_other(what)}: {shown}{more}")
    return "; ".join(parts)


def _other(what: str) -> str:
    return "mask" if what == "image" else "image"


def _scene_names(images: Sequence[Path]) -> list[str]:
    if _distinct_stems(images):
        return [p.stem for p in images]
    keys, _ = _unique_keys(images)
    return [re.sub(r"[^\w.\-]+", "_", key.replace("/", "__")) for key in keys]


def _dataset_splits(images: Sequence[Path]) -> dict[Path, Split]:
    """The dataset's own split of each image: from split list files, else split folders."""
    splits: dict[Path, Split] = {}
    listed = _split_lists(images)
    for image in images:
        if image in listed:
            splits[image] = listed[image]
            continue
        for folder in image.parents:
            if folder.name.lower() in SPLIT_FOLDERS:
                splits[image] = SPLIT_FOLDERS[folder.name.lower()]
                break
    return splits


def _split_lists(images: Sequence[Path]) -> dict[Path, Split]:
    """Images named in ``train.txt``/``val.txt``/``test.txt`` in their folder or the one above."""
    folders = {folder for image in images for folder in (image.parent, image.parent.parent)}
    by_stem: dict[str, Split] = {}
    for folder in sorted(folders):
        for file_name, split in (("train", "train"), ("val", "val"), ("test", "test")):
            listing = folder / f"{file_name}.txt"
            if listing.is_file():
                for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
                    if line.strip():
                        by_stem[Path(line.strip()).stem.lower()] = split  # type: ignore[assignment]
    if not by_stem:
        return {}
    return {image: by_stem[image.stem.lower()] for image in images if image.stem.lower() in by_stem}


def attach_clouds(scenes: list[Scene], clouds: Mapping[str, Path]) -> list[Scene]:
    """``scenes`` with the cloud masks of ``clouds`` (scene name -> file)."""
    return [replace(s, clouds=clouds[s.name]) if s.name in clouds else s for s in scenes]


def catalog_scenes(catalog: Catalog, name: str | None, *, mask: Path | None = None) -> list[Scene]:
    """The scenes of catalog dataset ``name``: its image/mask globs, else its seasons on one grid.

    Seasons share the mask on their grid: ``mask``, else the output of ``geotiler rescale``.

    Raises:
        InputError: the seasons' mask has not been made yet (run rescale), or no scene.
    """
    dataset = catalog.dataset(name)
    base = catalog.data_dir(name)
    if dataset.images_glob:
        images = [str(base / dataset.images_glob)]
        masks = [str(base / dataset.masks_glob)] if dataset.masks_glob else []
        return resolve_scenes(images, masks)
    from geotiler.synthetic import ensure_generated

    ensure_generated(catalog, name)
    seasons = catalog.scene_paths(name)
    if not seasons:
        raise InputError(f"{catalog.where}: dataset {name!r} has no scenes")
    mask_path = mask or catalog.output_path("rescale", name)
    if not mask_path.exists():
        raise InputError(
            f"{mask_path}: mask not found; run `geotiler rescale` first to put the mask on the "
            "scene grid, or pass --mask"
        )
    group = name or catalog.default_dataset
    scenes = [Scene.read(season, path, mask_path, group) for season, path in seasons.items()]
    return attach_clouds(scenes, catalog.cloud_mask_paths(name))


def parse_cloud_masks(specs: Sequence[str], scenes: Sequence[str]) -> dict[str, Path]:
    """Scene name -> cloud mask from ``--clouds`` values ``SCENE=FILE``, or a bare ``FILE`` when
    there is exactly one scene.

    Raises:
        InputError: an unknown scene, a scene given twice, a bare file with several scenes, or a
            local cloud mask file that does not exist.
    """
    known = ", ".join(scenes[:20]) or "none"
    masks: dict[str, Path] = {}
    for spec in specs:
        scene, sep, file = spec.partition("=")
        if not sep:
            if len(scenes) != 1:
                raise InputError(
                    f"--clouds {spec}: say which scene it is for with SCENE=FILE (scenes: {known})"
                )
            scene, file = scenes[0], spec
        scene, file = scene.strip(), file.strip()
        if scene not in scenes:
            raise InputError(f"--clouds {spec}: no scene {scene!r}; known scenes: {known}")
        if not file:
            raise InputError(f"--clouds {spec}: no file after '='; use SCENE=cloudmask.tif")
        if scene in masks:
            raise InputError(f"--clouds: scene {scene!r} is given two cloud masks; give one")
        path = Path(file)
        is_remote = "://" in file or file.startswith("/vsi")
        if not is_remote and not path.is_file():
            raise InputError(f"{path}: cloud mask file not found (--clouds {spec})")
        masks[scene] = path
    return masks
