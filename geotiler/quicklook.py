"""Quick-look PNGs of class maps: a downsampled picture with a legend of the classes it holds.

``geotiler quicklook MAP.tif`` draws any class raster (a predicted map, a reference mask) with the
colours and names of its own class table (or ``--classes``); values no table names get distinct
colours and ``class N`` labels, so any map can be looked at. The legend lists the classes present
with their share of the labelled pixels. :func:`geotiler.evaluate.evaluate` draws its side-by-side
comparison with the same helpers.
"""

from __future__ import annotations

import logging
import math
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import Resampling

from geotiler.catalog import ClassTable
from geotiler.errors import InputError
from geotiler.io import atomic_output, open_raster, read_class_table, require_single_band_integer

log = logging.getLogger(__name__)

QUICKLOOK_PX = 1000
FALLBACK_COLOURS = 20  # matplotlib's tab20


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend; InputError saying what to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("quick-look PNGs need matplotlib: pip install 'geotiler[plots]'") from None
    return plt


def class_preview(path: str | PathLike[str]) -> np.ndarray:
    """Band 1 of a class raster, nearest-downsampled to at most QUICKLOOK_PX a side."""
    with open_raster(path) as dataset:
        scale = max(1, math.ceil(max(dataset.height, dataset.width) / QUICKLOOK_PX))
        shape = (max(1, dataset.height // scale), max(1, dataset.width // scale))
        return np.asarray(dataset.read(1, out_shape=shape, resampling=Resampling.nearest))


def palette(classes: ClassTable | None, values: np.ndarray | list[int]) -> np.ndarray:
    """A (256, 4) RGBA lookup in [0, 1]: the table's colours, distinct ones for other values."""
    plt = pyplot()
    colours = np.zeros((256, 4))
    known = {c.id: c for c in classes.classes} if classes is not None else {}
    cycle = plt.get_cmap("tab20")
    spare = 0
    for value in sorted({int(v) for v in values}):
        if value in known:
            colours[value] = np.array(known[value].rgba) / 255
        elif classes is None or value != classes.nodata:
            colours[value] = cycle(spare % FALLBACK_COLOURS)
            spare += 1
    for cid, info in known.items():
        colours[cid] = np.array(info.rgba) / 255
    return colours


def class_name(classes: ClassTable | None, value: int) -> str:
    """The table's name for ``value``, else ``class N``."""
    if classes is not None and value in classes.names:
        return classes.names[value]
    return f"class {value}"


def write_map_quicklook(
    map_path: str | PathLike[str],
    output: str | PathLike[str],
    *,
    classes: ClassTable | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a PNG of the class map at ``map_path`` with a legend (see the module docstring)."""
    with open_raster(map_path) as dataset:
        require_single_band_integer(dataset, purpose="quicklook")
        table = classes or read_class_table(dataset)
        nodata = None if dataset.nodata is None else int(dataset.nodata)
    if Path(output).resolve() == Path(map_path).resolve():
        raise InputError(f"{output}: the quick-look would replace its own map; pick another -o")
    image = class_preview(map_path)
    values, counts = np.unique(image, return_counts=True)
    labelled = [(int(v), int(n)) for v, n in zip(values, counts, strict=True) if v != nodata]
    total = sum(n for _, n in labelled) or 1
    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from geotiler.figures import fit_legend, fit_title

    colours = palette(table, [v for v, _ in labelled])
    rows = 1 + math.ceil(len(labelled) / 3)
    fig, ax = plt.subplots(figsize=(7, 6 + 0.25 * rows), layout="constrained")
    masked = np.ma.masked_where(image == nodata, image) if nodata is not None else image
    ax.imshow(masked, cmap=ListedColormap(colours), vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    handles = [
        Patch(color=colours[v], label=f"{v} {class_name(table, v)}: {100 * n / total:.1f}%")
        for v, n in labelled
    ]
    if handles:
        fit_legend(fig, handles, max_columns=3, fontsize=8)
    fit_title(ax, Path(map_path).name + (f" ({table.name})" if table is not None else ""))
    with atomic_output(output, overwrite=overwrite) as temporary:
        fig.savefig(temporary, dpi=90, format="png")
    plt.close(fig)
    return Path(output)


__all__ = ["class_name", "class_preview", "palette", "pyplot", "write_map_quicklook"]
