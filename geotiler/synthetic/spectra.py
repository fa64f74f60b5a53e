"""Sentinel-2-like reflectance of the generated scenes, per class and season.

Each 10 m pixel mixes the spectra of the 1 m classes it contains in proportion to their counts
(so a 6 m street through a town pixel darkens it a little, a river narrower than a pixel shows as
a darker field). Every landscape feature has its own brightness offset (``tone``: one field is
greener than the next), and the scene gets a gentle large-scale brightness texture and per-pixel
noise. Values are surface reflectance x 10000 in the bands of :data:`BANDS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geotiler.synthetic.noise import Waves, pixel_noise, stream_key

BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
SCALE = 10000
"""Stored value = reflectance x SCALE (as Sentinel-2 L2A products)."""

# Reflectance x 10000 per class id, bands in BANDS order. April: crops green, grass fresh;
# August: cereals harvested (stubble, bright in SWIR), grass dry, irrigated parks still green.
_COMMON = {
    3: (250, 450, 290, 720, 1950, 2550, 2850, 3000, 1400, 650),  # forest
    5: (1250, 1600, 1900, 2100, 2300, 2400, 2500, 2600, 3550, 3050),  # bare soil
    6: (1100, 1250, 1350, 1500, 1650, 1750, 1850, 1900, 2400, 2150),  # urban
    # Isolated urban: farmsteads (masies) with terracotta roofs and a bare yard: red above green,
    # flat red edge, darker SWIR than bare fields (a plain grey roof would read as woody crops).
    7: (1000, 1250, 2000, 2200, 2250, 2300, 2350, 2400, 2700, 2300),  # isolated urban
    9: (1650, 1850, 2000, 2100, 2200, 2250, 2300, 2350, 2850, 2650),  # industrial
    10: (2300, 2600, 2850, 3000, 3100, 3200, 3300, 3350, 4000, 3600),  # mining
    11: (650, 750, 800, 850, 900, 950, 1000, 1050, 1250, 1150),  # transport (asphalt)
    12: (550, 650, 380, 280, 220, 190, 170, 160, 90, 70),  # water
}
SPECTRA: dict[str, dict[int, tuple[int, ...]]] = {
    "april": {
        **_COMMON,
        1: (330, 640, 380, 1000, 2600, 3300, 3600, 3800, 2000, 980),
        2: (650, 900, 1000, 1350, 1900, 2150, 2300, 2450, 2900, 2100),
        4: (450, 750, 650, 1200, 2300, 2800, 3000, 3150, 2400, 1400),
        8: (280, 600, 320, 950, 3000, 3900, 4300, 4450, 1900, 900),
    },
    "august": {
        **_COMMON,
        1: (950, 1250, 1550, 1800, 2000, 2150, 2250, 2400, 3300, 2700),
        2: (700, 950, 1050, 1500, 2300, 2650, 2850, 3000, 2900, 2000),
        3: (270, 470, 320, 780, 1850, 2400, 2650, 2800, 1550, 760),
        4: (520, 720, 760, 1100, 1650, 1900, 2050, 2200, 2300, 1550),
        8: (320, 650, 380, 1050, 2850, 3700, 4100, 4250, 2050, 1000),
    },
}
SEASONS = tuple(SPECTRA)

# How much one feature's brightness may differ from its class mean (fraction).
TONE_AMPLITUDE: dict[int, float] = {
    1: 0.12,
    2: 0.08,
    3: 0.06,
    4: 0.08,
    5: 0.10,
    6: 0.05,
    7: 0.06,
    8: 0.05,
    9: 0.10,
    10: 0.06,
    11: 0.05,
    12: 0.10,
}

N_CLASSES = 13  # ids 0..12; 0 never occurs in the landscape itself


def spectra_matrix(season: str) -> np.ndarray:
    """``(13, bands)`` reflectance x 10000 by class id (row 0 unused) for ``season``."""
    table = SPECTRA[season]
    matrix = np.zeros((N_CLASSES, len(BANDS)), dtype=np.float32)
    for class_id, values in table.items():
        matrix[class_id] = values
    return matrix


@dataclass(frozen=True)
class SceneStyle:
    """What makes one season's scene: its spectra, a brightness texture and noise streams."""

    season: str
    spectra: np.ndarray
    texture: Waves
    noise_key: int

    @classmethod
    def create(cls, season: str, *, seed: int, season_index: int, extent_m: float) -> SceneStyle:
        rng = np.random.default_rng([seed, 4, season_index])
        wavelengths = (min(800.0, extent_m / 3), min(4000.0, extent_m))
        return cls(
            season,
            spectra_matrix(season),
            Waves.random(rng, wavelengths=wavelengths),
            stream_key(seed, 5, season_index),
        )

    def surface(
        self,
        counts: np.ndarray,
        tone_sums: np.ndarray,
        *,
        rows: np.ndarray,
        cols: np.ndarray,
        pixel_m: float,
        extent_m: float,
    ) -> np.ndarray:
        """``(bands, h, w)`` float32 reflectance x 10000 of the surface (no clouds).

        Args:
            counts: ``(h, w, 13)`` 1 m pixels of each class id in each 10 m pixel.
            tone_sums: ``(h, w, 13)`` sum of the feature tones of those pixels, per class.
            rows, cols: absolute scene row ``(h, 1)`` and column ``(1, w)`` indices.
            pixel_m: scene pixel size; extent_m: the extent's side (for map coordinates).
        """
        per_pixel = counts.sum(axis=2, keepdims=True)
        mixed = (counts + tone_sums) @ self.spectra / per_pixel
        x = (cols + 0.5) * pixel_m
        y = extent_m - (rows + 0.5) * pixel_m
        brightness = 1.0 + 0.03 * self.texture(x, y).astype(np.float32)
        brightness = brightness * (1.0 + 0.035 * pixel_noise(self.noise_key, rows, cols))
        out = np.moveaxis(mixed, 2, 0) * brightness
        for band in range(len(BANDS)):
            key = stream_key(self.noise_key, band)
            out[band] *= 1.0 + 0.02 * pixel_noise(key, rows, cols)
            out[band] += 25.0 * pixel_noise(stream_key(key, 1), rows, cols)
        return out.astype(np.float32)


def to_uint16(reflectance: np.ndarray) -> np.ndarray:
    """Round to the stored integers; 0 is kept free for nodata."""
    return np.clip(np.rint(reflectance), 1, 65535).astype(np.uint16)
