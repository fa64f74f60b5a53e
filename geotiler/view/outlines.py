"""The tile store drawn on the map: one outline per tile, coloured by verdict or by split."""

from __future__ import annotations

from os import PathLike
from typing import Any

import numpy as np

from geotiler.view.grid import ViewGrid

SPLIT_COLOURS = {"train": "#2b83ba", "val": "#fdae61", "test": "#9e4fbf"}
KEEP_COLOUR = "#1a9641"
DROP_COLOURS = ("#d7191c", "#f46d43", "#e6ab02", "#7570b3", "#e7298a", "#66a61e", "#a6761d")


def verdict_colours(verdicts: list[str]) -> dict[str, str]:
    """Green for kept tiles, a distinct colour per drop reason."""
    colours = {}
    drops = iter(DROP_COLOURS * (1 + len(verdicts) // len(DROP_COLOURS)))
    for name in verdicts:
        colours[name] = KEEP_COLOUR if name == "keep" else next(drops)
    return colours


def tile_outlines(
    store_path: str | PathLike[str], grid: ViewGrid, *, scene: str | None = None
) -> dict[str, list[Any]]:
    """Columns for a Bokeh quad source: bounds, verdict, split, weight, source, colours.

    Only the tiles cut from ``scene`` are returned when the store has a scene of that name, else
    those of its first scene (seasons share their tile positions).
    """
    from geotiler.tiles.store import TileStore

    store = TileStore.open(store_path)
    frame = store.index
    names = list(store.scenes)
    chosen = scene if scene in names else names[0]
    frame = frame[frame["scene"] == chosen]
    scene_grid = store.grid(chosen)
    transform = scene_grid.transform
    size = store.tile_size
    left = transform.c + frame["col"].to_numpy() * transform.a
    top = transform.f + frame["row"].to_numpy() * transform.e
    right = left + size * transform.a
    bottom = top + size * transform.e
    if not grid.georeferenced:
        left, right = frame["col"].to_numpy(float), frame["col"].to_numpy(float) + size
        top, bottom = -frame["row"].to_numpy(float), -frame["row"].to_numpy(float) - size
    elif scene_grid.crs != grid.crs:
        left, bottom, right, top = _reproject(scene_grid.crs, grid.crs, left, bottom, right, top)
    verdicts = [str(v) for v in frame["verdict"]]
    splits = [str(s) for s in frame["split"]]
    by_verdict = verdict_colours(list(store.decisions.verdicts))
    return {
        "tile": [int(i) for i in frame.index],
        "left": list(map(float, left)),
        "right": list(map(float, right)),
        "bottom": list(map(float, bottom)),
        "top": list(map(float, top)),
        "verdict": verdicts,
        "split": splits,
        "weight": [round(float(w), 4) for w in frame["weight"]],
        "source": [str(s) for s in frame["source"]],
        "verdict_colour": [by_verdict.get(v, "#777777") for v in verdicts],
        "split_colour": [SPLIT_COLOURS.get(s, "#777777") for s in splits],
    }


def _reproject(src: Any, dst: Any, *bounds: np.ndarray) -> tuple[np.ndarray, ...]:
    from rasterio.warp import transform

    left, bottom, right, top = bounds
    xs, ys = transform(src, dst, [*left, *right], [*top, *bottom])
    n = len(left)
    return (
        np.asarray(xs[:n]),
        np.asarray(ys[n:]),
        np.asarray(xs[n:]),
        np.asarray(ys[:n]),
    )


def describe_tile(store_path: str | PathLike[str], tile: int) -> str:
    """A tile's verdict, split, sampling weight and class shares, as a small HTML block."""
    from geotiler.tiles.store import TileStore

    store = TileStore.open(store_path)
    row = store.index.loc[tile]
    counts = {
        class_id: int(row[f"class_{class_id}"])
        for class_id in range(store.num_classes)
        if f"class_{class_id}" in row and int(row[f"class_{class_id}"]) > 0
    }
    total = sum(counts.values()) or 1
    names = store.classes.names
    shares = ", ".join(
        f"{names.get(c, 'nodata' if c == store.nodata else c)} {n / total:.0%}"
        for c, n in sorted(counts.items(), key=lambda item: -item[1])
    )
    return (
        f"<b>tile {tile}</b> ({row['scene']}, row {row['row']}, col {row['col']})<br>"
        f"<b>verdict</b>: {row['verdict']} &nbsp; <b>split</b>: {row['split']} &nbsp; "
        f"<b>sampling weight</b>: {float(row['weight']):.3g}<br>"
        f"<b>valid</b>: {float(row['valid_fraction']):.0%}<br><b>classes</b>: {shares or '-'}"
    )
