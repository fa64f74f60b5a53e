"""The vector landscape of the generated mini-Catalonia: polygons with class ids, drawn in order.

:func:`build_landscape` lays out, once for the whole extent, a coast and sea to the east, a
nodata corner outside the mapped area (north-west), field parcels whose crops follow a terrain
gradient (crops on the plain, forest and scrub in the hills), rivers that widen downstream, lakes,
towns with street grids, parks and an industrial estate, highways and access roads, quarries and
isolated buildings. The number of features grows with the area; geometry is cheap (a few thousand
features for 10 x 10 km). Rows of :attr:`Landscape.features` are in drawing order: later rows
cover earlier ones, so roads and rivers run over fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

from geotiler.synthetic.noise import Waves
from geotiler.synthetic.shapes import blob, parcels, rotated_rectangle, street_grid, variable_buffer

# Class ids of the ``catalonia12`` table.
HERBACEOUS, WOODY, FOREST, SCRUB, BARE = 1, 2, 3, 4, 5
URBAN, ISOLATED, GREEN, INDUSTRIAL, MINING, TRANSPORT, WATER = 6, 7, 8, 9, 10, 11, 12
CLASS_IDS = tuple(range(1, 13))

# Drawing order: a layer covers every layer with a smaller priority.
PRIORITY = {
    "parcel": 0,
    "beach": 1,
    "town": 2,
    "industrial": 3,
    "quarry": 3,
    "isolated": 3,
    "park": 4,
    "lake": 5,
    "river": 5,
    "road": 6,
    "street": 6,
    "sea": 7,
}

# Parcel classes and their probabilities on the plain, the hills and the mountains.
_PARCEL_CLASSES = np.array([HERBACEOUS, WOODY, FOREST, SCRUB, BARE])
_PARCEL_PROBABILITIES = np.array(
    [
        [0.44, 0.30, 0.05, 0.11, 0.10],
        [0.16, 0.22, 0.30, 0.26, 0.06],
        [0.02, 0.03, 0.60, 0.32, 0.03],
    ]
)
_REFERENCE_EXTENT_M = 10240.0

Feature = tuple[str, BaseGeometry, int]


@dataclass(frozen=True)
class Landscape:
    """The whole extent's features in map coordinates, with a spatial index.

    Attributes:
        extent_m: side of the square extent, metres.
        features: ``geometry``, ``class_id``, ``tone`` (brightness offset) and ``layer``, in
            drawing order.
        unmapped: the area outside the mapped region (nodata in the mask, still imaged by scenes).
        tree: STRtree over ``features.geometry`` (indices are row numbers).
    """

    extent_m: float
    features: gpd.GeoDataFrame
    unmapped: BaseGeometry
    tree: STRtree

    @property
    def class_lookup(self) -> np.ndarray:
        """Class id by feature number (row + 1); 0 (no feature) reads as scrub."""
        return np.concatenate([[SCRUB], self.features["class_id"].to_numpy()]).astype(np.uint8)

    @property
    def tone_lookup(self) -> np.ndarray:
        """Brightness offset by feature number (row + 1)."""
        return np.concatenate([[0.0], self.features["tone"].to_numpy()]).astype(np.float32)


def build_landscape(
    extent_m: float,
    *,
    seed: int,
    origin: tuple[float, float],
    crs: str,
    tone_amplitude: dict[int, float],
) -> Landscape:
    """Lay out the landscape of a square extent whose upper-left corner is ``origin``."""
    rng = np.random.default_rng([seed, 1])
    layout = _Layout(rng, extent_m)
    features = layout.features()
    features.sort(key=lambda feature: PRIORITY[feature[0]])  # stable: keeps generation order
    tone_rng = np.random.default_rng([seed, 2])
    classes = np.array([class_id for _, _, class_id in features], dtype=np.uint8)
    amplitude = np.array([tone_amplitude.get(int(c), 0.0) for c in classes])
    tones = tone_rng.uniform(-1.0, 1.0, size=len(features)) * amplitude
    shift = np.array([origin[0], origin[1] - extent_m])
    geometries = shapely.transform(
        np.array([g for _, g, _ in features], dtype=object), lambda c: c + shift
    )
    frame = gpd.GeoDataFrame(
        {"layer": [name for name, _, _ in features], "class_id": classes, "tone": tones},
        geometry=geometries,
        crs=crs,
    )
    unmapped = shapely.transform(layout.unmapped, lambda c: c + shift)
    return Landscape(extent_m, frame, unmapped, STRtree(frame.geometry.to_numpy()))


class _Layout:
    """The layout in local metres (x east from the left edge, y north from the bottom edge)."""

    def __init__(self, rng: np.random.Generator, extent_m: float) -> None:
        self.rng = rng
        self.extent = extent_m
        self.scale = float(np.clip(extent_m / _REFERENCE_EXTENT_M, 0.25, 1.0))
        self.area_km2 = extent_m**2 / 1e6
        self.coast = self._coastline()
        self.unmapped = self._unmapped()
        self.terrain = Waves.random(rng, wavelengths=(0.25 * extent_m, 0.8 * extent_m))

    def count(self, per_km2: float, minimum: int = 1) -> int:
        return max(minimum, round(per_km2 * self.area_km2))

    def features(self) -> list[Feature]:
        out: list[Feature] = []
        out += self._parcels()
        out += self._sea_and_beach()
        out += self._rivers()
        out += self._lakes()
        highways = self._highways()
        out += [("road", geometry, TRANSPORT) for geometry in highways]
        out += self._towns(shapely.union_all(highways))
        out += self._quarries()
        out += self._isolated()
        return out

    # -- natural frame ------------------------------------------------------------------------

    def _coastline(self) -> Callable[[np.ndarray], np.ndarray]:
        e, rng = self.extent, self.rng
        phases = rng.uniform(0, 2 * np.pi, 3)

        def coast_x(y: np.ndarray) -> np.ndarray:
            return (
                0.86 * e
                + 0.035 * e * np.sin(2 * np.pi * y / (0.7 * e) + phases[0])
                + 0.015 * e * np.sin(2 * np.pi * y / (0.23 * e) + phases[1])
                + 12.0 * np.sin(2 * np.pi * y / 310.0 + phases[2])
            )

        return coast_x

    def _unmapped(self) -> BaseGeometry:
        e = self.extent
        start, stop = np.array([-60.0, 0.64 * e]), np.array([0.36 * e, e + 60.0])
        t = np.linspace(0.0, 1.0, 80)[:, None]
        normal = np.array([stop[1] - start[1], start[0] - stop[0]]) / np.hypot(*(stop - start))
        wobble = 0.03 * e * np.sin(2 * np.pi * 3 * t + self.rng.uniform(0, 6.3)) * np.sin(np.pi * t)
        line = start + t * (stop - start) + wobble * normal
        return shapely.make_valid(Polygon([*map(tuple, line), (-60.0, e + 60.0)]))

    def _land_level(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """0 on the coastal plain to 1 in the western mountains."""
        return np.clip(1.05 - x / (0.86 * self.extent) + 0.3 * self.terrain(x, y), 0.0, 1.0)

    def _parcels(self) -> list[Feature]:
        spacing = min(150.0, self.extent / 8)
        cells, points = parcels(self.rng, self.extent, spacing_m=spacing)
        level = self._land_level(points[:, 0], points[:, 1])
        low = np.clip(level * 2, 0, 1)[:, None]
        high = np.clip(level * 2 - 1, 0, 1)[:, None]
        p = _PARCEL_PROBABILITIES
        probabilities = np.where(
            level[:, None] < 0.5, p[0] + low * (p[1] - p[0]), p[1] + high * (p[2] - p[1])
        )
        wavelengths = (min(1200.0, 0.3 * self.extent), min(3500.0, 0.9 * self.extent))
        preference = np.stack(
            [
                Waves.random(self.rng, wavelengths=wavelengths)(points[:, 0], points[:, 1])
                for _ in _PARCEL_CLASSES
            ],
            axis=1,
        )
        gumbel = -np.log(-np.log(self.rng.uniform(1e-9, 1.0, size=probabilities.shape)))
        choice = np.argmax(np.log(probabilities) + 1.2 * preference + gumbel, axis=1)
        return [
            ("parcel", cell, int(_PARCEL_CLASSES[k])) for cell, k in zip(cells, choice, strict=True)
        ]

    def _sea_and_beach(self) -> list[Feature]:
        e = self.extent
        y = np.linspace(-60.0, e + 60.0, max(64, int(e / 25)))
        shore = np.column_stack([self.coast(y), y])
        sea = Polygon([*map(tuple, shore), (e + 60.0, e + 60.0), (e + 60.0, -60.0)])
        beach = LineString(shore).buffer(35.0, cap_style="flat")
        return [("beach", beach, BARE), ("sea", sea, WATER)]

    def _rivers(self) -> list[Feature]:
        e, rng = self.extent, self.rng
        count = max(1, round(e / 5000))
        out: list[Feature] = []
        for index in range(count):
            y0 = e * (0.15 + 0.7 * (index + rng.uniform(0.2, 0.8)) / count)
            x = np.arange(-30.0, e + 30.0, 20.0)
            phases = rng.uniform(0, 2 * np.pi, 4)
            y = (
                y0
                + 0.07 * e * np.sin(2 * np.pi * x / (0.6 * e) + phases[0])
                + 0.02 * e * np.sin(2 * np.pi * x / (0.15 * e) + phases[1])
                + 40 * self.scale * np.sin(2 * np.pi * x / 350 + phases[2])
            )
            y = np.clip(y, 0.03 * e, 0.97 * e)
            width = np.clip(
                4.5 + 30 * np.clip(x / e, 0, 1) ** 1.8 + 1.5 * np.sin(x / 90 + phases[3]), 3, None
            )
            keep = x < self.coast(y) + 60
            out.append(
                ("river", variable_buffer(np.column_stack([x, y])[keep], width[keep]), WATER)
            )
        return out

    def _lakes(self) -> list[Feature]:
        e, rng = self.extent, self.rng
        return [
            (
                "lake",
                blob(
                    rng,
                    rng.uniform(0.1, 0.7) * e,
                    rng.uniform(0.12, 0.88) * e,
                    rng.uniform(70, 220) * self.scale,
                ),
                WATER,
            )
            for _ in range(self.count(1 / 35))
        ]

    def _highways(self) -> list[BaseGeometry]:
        e, rng = self.extent, self.rng
        roads: list[BaseGeometry] = []
        y = np.linspace(-60.0, e + 60.0, 200)
        for index in range(max(1, round(e / 12000))):
            offset = (0.12 + 0.3 * index + rng.uniform(0, 0.08)) * e
            x = self.coast(y) - offset + 0.02 * e * np.sin(2 * np.pi * y / e + rng.uniform(0, 6.3))
            roads.append(LineString(np.column_stack([x, y])).buffer(13.0, cap_style="flat"))
        x = np.linspace(-60.0, e + 60.0, 200)
        for index in range(max(1, round(e / 12000))):
            base = (0.3 + 0.4 * (index + rng.uniform(0.3, 0.7)) / max(1, round(e / 12000))) * e
            y_road = base + 0.05 * e * np.sin(2 * np.pi * x / (1.3 * e) + rng.uniform(0, 6.3))
            keep = x < self.coast(y_road) + 40
            roads.append(
                LineString(np.column_stack([x, y_road])[keep]).buffer(13.0, cap_style="flat")
            )
        return roads

    # -- settlements --------------------------------------------------------------------------

    def _town_sites(self) -> list[tuple[float, float, float]]:
        e, rng = self.extent, self.rng
        sites: list[tuple[float, float, float]] = []
        wanted = self.count(1 / 25)
        for _ in range(400):
            if len(sites) == wanted:
                break
            radius = rng.uniform(350, 700) * self.scale
            x, y = rng.uniform(0.15, 0.75) * e, rng.uniform(0.12, 0.88) * e
            if x + radius > float(self.coast(np.array([y]))[0]) - 0.04 * e:
                continue
            if self.unmapped.distance(Point(x, y)) < radius:
                continue
            if any(math.hypot(x - sx, y - sy) < 1.6 * (radius + sr) for sx, sy, sr in sites):
                continue
            sites.append((x, y, radius))
        return sites

    def _towns(self, highways: BaseGeometry) -> list[Feature]:
        out: list[Feature] = []
        for x, y, radius in self._town_sites():
            out += self._town(x, y, radius, highways)
        self.towns = shapely.union_all([g for name, g, _ in out if name in ("town", "industrial")])
        return out

    def _town(self, x: float, y: float, radius: float, highways: BaseGeometry) -> list[Feature]:
        rng = self.rng
        heading = rng.uniform(0, 2 * np.pi)
        satellite = (x + 0.6 * radius * math.cos(heading), y + 0.6 * radius * math.sin(heading))
        town = shapely.union_all([blob(rng, x, y, radius), blob(rng, *satellite, 0.55 * radius)])
        angle = rng.uniform(0, 90)
        streets, blocks = street_grid(
            rng, town, angle_deg=angle, spacing_m=(55.0, 85.0), width_m=(5.0, 8.0)
        )
        out: list[Feature] = [("town", town, URBAN), ("street", streets, TRANSPORT)]
        for index in rng.choice(len(blocks), size=min(len(blocks), 3), replace=False):
            out.append(("park", blocks[int(index)], GREEN))
        park_dir = heading + np.pi + rng.uniform(-0.6, 0.6)
        for turn in (0.0, rng.uniform(1.2, 1.8)):
            at = (
                x + 1.1 * radius * math.cos(park_dir + turn),
                y + 1.1 * radius * math.sin(park_dir + turn),
            )
            out.append(("park", blob(rng, *at, 0.38 * radius), GREEN))
        out += self._industry(x, y, radius, angle, park_dir + np.pi / 2 + rng.uniform(-0.4, 0.4))
        if not highways.is_empty:
            near = nearest_points(highways, Point(x, y))[0]
            out.append(("road", LineString([(x, y), (near.x, near.y)]).buffer(6.0), TRANSPORT))
        return out

    def _industry(
        self, x: float, y: float, radius: float, angle: float, direction: float
    ) -> list[Feature]:
        rng = self.rng
        cx, cy = x + 1.3 * radius * math.cos(direction), y + 1.3 * radius * math.sin(direction)
        width, height = rng.uniform(1.1, 1.8) * radius, rng.uniform(0.6, 1.0) * radius
        estate = rotated_rectangle(cx, cy, width, height, angle)
        spine = rotated_rectangle(cx, cy, width, 11.0, angle)
        return [("industrial", estate, INDUSTRIAL), ("road", spine, TRANSPORT)]

    def _quarries(self) -> list[Feature]:
        e, rng = self.extent, self.rng
        out: list[Feature] = []
        for _ in range(200):
            if len(out) == self.count(1 / 30):
                break
            x, y, radius = (
                rng.uniform(0.08, 0.55) * e,
                rng.uniform(0.1, 0.9) * e,
                rng.uniform(230, 380) * self.scale,
            )
            site = Point(x, y)
            if self.unmapped.distance(site) < radius or self.towns.distance(site) < radius:
                continue
            out.append(("quarry", blob(rng, x, y, radius, roughness=0.35), MINING))
        return out

    def _isolated(self) -> list[Feature]:
        e, rng = self.extent, self.rng
        wanted = self.count(6.0, minimum=3)
        x = rng.uniform(0, e, size=4 * wanted)
        y = rng.uniform(0, e, size=4 * wanted)
        size = rng.uniform([25.0, 20.0], [70.0, 50.0], size=(4 * wanted, 2))
        angle = rng.uniform(0, 90, size=4 * wanted)
        ok = (x < self.coast(y) - 60) & ~shapely.contains_xy(self.towns.buffer(40.0), x, y)
        chosen = np.flatnonzero(ok)[:wanted]
        return [
            ("isolated", rotated_rectangle(x[i], y[i], size[i, 0], size[i, 1], angle[i]), ISOLATED)
            for i in chosen
        ]
