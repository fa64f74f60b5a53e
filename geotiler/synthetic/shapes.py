"""Geometry helpers for the generated landscape: blobs, meanders, street grids, parcels.

Coordinates are metres in a local frame: ``x`` east from the left edge, ``y`` north from the bottom
edge of the extent. Every helper draws its randomness from the generator it is given, so the
landscape is a pure function of the seed.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import LineString, MultiPoint, Polygon, box
from shapely.geometry.base import BaseGeometry


def blob(
    rng: np.random.Generator, x: float, y: float, radius: float, *, roughness: float = 0.25
) -> Polygon:
    """An irregular closed shape around ``(x, y)`` of mean radius ``radius``."""
    angles = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
    profile = np.ones_like(angles)
    for harmonic in range(2, 6):
        profile += (
            roughness
            / harmonic
            * rng.uniform(0.3, 1.0)
            * np.sin(harmonic * angles + rng.uniform(0, 6.3))
        )
    radii = radius * np.clip(profile, 0.35, None)
    return Polygon(np.column_stack([x + radii * np.cos(angles), y + radii * np.sin(angles)]))


def rotated_rectangle(x: float, y: float, width: float, height: float, angle_deg: float) -> Polygon:
    """A ``width x height`` rectangle centred on ``(x, y)`` turned ``angle_deg`` anticlockwise."""
    rect = box(x - width / 2, y - height / 2, x + width / 2, y + height / 2)
    return affinity.rotate(rect, angle_deg, origin=(x, y))


def variable_buffer(line: np.ndarray, widths: np.ndarray, *, pieces: int = 24) -> BaseGeometry:
    """A ribbon along the polyline ``line`` ((n, 2) points) whose width follows ``widths`` (n,)."""
    bounds = np.linspace(0, len(line) - 1, min(pieces, len(line) - 1) + 1).astype(int)
    parts = []
    for start, stop in itertools.pairwise(bounds):
        segment = LineString(line[start : stop + 1])
        width = float(widths[start : stop + 1].mean())
        parts.append(segment.buffer(width / 2, cap_style="round", join_style="round", quad_segs=2))
    return shapely.union_all(parts)


def street_grid(
    rng: np.random.Generator,
    area: BaseGeometry,
    *,
    angle_deg: float,
    spacing_m: tuple[float, float],
    width_m: tuple[float, float],
    avenue_every: int = 4,
    avenue_width_m: float = 14.0,
) -> tuple[BaseGeometry, list[Polygon]]:
    """Streets on a rotated grid clipped to ``area`` and the city blocks between them."""
    cx, cy = area.centroid.x, area.centroid.y
    minx, miny, maxx, maxy = area.bounds
    reach = math.hypot(maxx - minx, maxy - miny) / 2 + 50.0
    streets: list[BaseGeometry] = []
    offsets: dict[str, list[float]] = {}
    for axis in ("x", "y"):
        position = -reach + rng.uniform(0, spacing_m[1])
        positions = []
        index = 0
        while position < reach:
            positions.append(position)
            width = avenue_width_m if index % avenue_every == 2 else rng.uniform(*width_m)
            if axis == "x":
                coords = [(cx + position, cy - reach), (cx + position, cy + reach)]
            else:
                coords = [(cx - reach, cy + position), (cx + reach, cy + position)]
            streets.append(LineString(coords).buffer(width / 2, cap_style="flat"))
            position += rng.uniform(*spacing_m)
            index += 1
        offsets[axis] = positions
    network = affinity.rotate(shapely.union_all(streets), angle_deg, origin=(cx, cy))
    blocks = [
        affinity.rotate(box(cx + x0, cy + y0, cx + x1, cy + y1), angle_deg, origin=(cx, cy))
        for x0, x1 in itertools.pairwise(offsets["x"])
        for y0, y1 in itertools.pairwise(offsets["y"])
    ]
    inside = [block for block in blocks if area.contains(block.centroid)]
    return network.intersection(area), inside


def parcels(
    rng: np.random.Generator, extent_m: float, *, spacing_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Field-like polygons tiling the extent (Voronoi cells of jittered grid points).

    Returns the polygons and their seed points ((n, 2) array, the cells' order).
    """
    count = max(2, math.ceil(extent_m / spacing_m))
    step = extent_m / count
    centres = (np.arange(count) + 0.5) * step
    gx, gy = np.meshgrid(centres, centres)
    jitter = rng.uniform(-0.42, 0.42, size=(2, *gx.shape)) * step
    points = np.column_stack([(gx + jitter[0]).ravel(), (gy + jitter[1]).ravel()])
    frame = box(-step, -step, extent_m + step, extent_m + step)
    cells = shapely.get_parts(
        shapely.voronoi_polygons(MultiPoint(points), extend_to=frame, ordered=True)
    )
    cells = shapely.clip_by_rect(cells, -1.0, -1.0, extent_m + 1.0, extent_m + 1.0)
    return np.asarray(cells), points
