"""Clouds and their shadows over the generated scenes, and the matching cloud mask.

Clouds are clusters of soft discs planned once for the extent so that the flagged area is close
to the requested fraction. A pixel's cloud opacity comes from its distance to the disc centres
(soft edges, gentle internal texture); the shadow is the same opacity field displaced towards the
north-west (morning sun in the south-east, as for Sentinel-2 over Catalonia). Cloudy pixels blend
towards a bright, white, slightly SWIR-darker cloud spectrum; shadowed pixels darken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

from geotiler.synthetic.noise import Waves

CLEAR, CLOUD, SHADOW = 0, 1, 2
CLOUD_VALUES = {CLEAR: "clear", CLOUD: "cloud", SHADOW: "shadow"}
CLOUD_SPECTRUM = np.array(
    [5200, 5000, 4900, 4800, 4700, 4600, 4500, 4400, 3300, 2400], dtype=np.float32
)[:, None, None]
THRESHOLD = 0.2  # opacity above which a pixel is flagged
_EDGE_SHARPNESS = 3.0
_FLAGGED_RADIUS = 0.9  # fraction of a disc's radius flagged as cloud (from the two constants)
_SHADOW_DARKENING = 0.55


@dataclass(frozen=True)
class Clouds:
    """Cloud discs (local metres: x east, y north from the lower-left corner) and shadow shift."""

    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    shadow_dx: float
    shadow_dy: float
    texture: Waves

    @property
    def empty(self) -> bool:
        return self.x.size == 0


def plan_clouds(extent_m: float, fraction: float, *, seed: int, season_index: int) -> Clouds:
    """Cloud clusters covering about ``fraction`` of the extent."""
    rng = np.random.default_rng([seed, 3, season_index])
    scale = float(np.clip(extent_m / 10240.0, 0.25, 1.0))
    texture = Waves.random(rng, wavelengths=(150.0 * scale, 700.0 * scale))
    heading = np.deg2rad(rng.uniform(120, 150))
    length = rng.uniform(400, 800) * scale
    discs: list[np.ndarray] = []
    target = fraction * extent_m**2
    frame = shapely.box(0, 0, extent_m, extent_m)
    covered = 0.0
    for _ in range(50):
        if covered >= target or fraction <= 0:
            break
        mean_cluster = 4.0 * (250.0 * scale) ** 2 * math.pi
        batch = max(1, math.ceil((target - covered) / mean_cluster))
        for _ in range(batch):
            discs.append(_cluster(rng, extent_m, scale))
        every = np.concatenate(discs)
        circles = shapely.buffer(shapely.points(every[:, :2]), every[:, 2] * _FLAGGED_RADIUS)
        covered = shapely.union_all(circles).intersection(frame).area
    every = np.concatenate(discs) if discs else np.zeros((0, 3))
    return Clouds(
        every[:, 0],
        every[:, 1],
        every[:, 2],
        float(length * math.cos(heading)),
        float(length * math.sin(heading)),
        texture,
    )


def _cluster(rng: np.random.Generator, extent_m: float, scale: float) -> np.ndarray:
    cx, cy = rng.uniform(-0.05, 1.05, size=2) * extent_m
    count = int(rng.integers(6, 15))
    spread = 350.0 * scale
    radius = rng.uniform(60, 350, size=count) * scale
    x = cx + rng.normal(0, spread, size=count)
    y = cy + rng.normal(0, spread, size=count)
    return np.column_stack([x, y, radius])


def opacity(clouds: Clouds, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cloud opacity in ``[0, 1]`` at map points ``x (1, w)``, ``y (h, 1)`` (local metres)."""
    shape = np.broadcast_shapes(x.shape, y.shape)
    alpha = np.zeros(shape, dtype=np.float32)
    if clouds.empty:
        return alpha
    near = (
        (clouds.x + clouds.radius > x.min())
        & (clouds.x - clouds.radius < x.max())
        & (clouds.y + clouds.radius > y.min())
        & (clouds.y - clouds.radius < y.max())
    )
    for cx, cy, radius in zip(clouds.x[near], clouds.y[near], clouds.radius[near], strict=True):
        inside = 1.0 - np.hypot(x - cx, y - cy) / radius
        t = np.clip(inside * _EDGE_SHARPNESS, 0.0, 1.0)
        np.maximum(alpha, (t * t * (3.0 - 2.0 * t)).astype(np.float32), out=alpha)
    if near.any():
        alpha *= (0.8 + 0.2 * clouds.texture(x, y)).astype(np.float32)
    return alpha


def cloud_layers(clouds: Clouds, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cloud opacity and shadow strength at the given map points."""
    alpha = opacity(clouds, x, y)
    shadow = opacity(clouds, x - clouds.shadow_dx, y - clouds.shadow_dy)
    return alpha, shadow


def apply_clouds(surface: np.ndarray, alpha: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """Darken shadows, then blend towards the cloud spectrum by opacity (``(bands, h, w)``)."""
    shaded = surface * (1.0 - _SHADOW_DARKENING * shadow)
    return shaded * (1.0 - alpha) + CLOUD_SPECTRUM * alpha


def cloud_mask(alpha: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """``uint8``: 1 cloud, 2 shadow (not under a cloud), 0 clear."""
    mask = np.zeros(alpha.shape, dtype=np.uint8)
    mask[shadow > THRESHOLD] = SHADOW
    mask[alpha > THRESHOLD] = CLOUD
    return mask
