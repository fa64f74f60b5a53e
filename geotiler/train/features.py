"""Per-pixel features for the pixel baseline: bands, spectral indices, multi-scale neighbourhoods.

A :class:`FeatureSpec` is a plain value (saved in the checkpoint) that says which features a tile
``(B, H, W)`` turns into: each band's value, its box means over 3/7/15/31 px windows and its local
standard deviation over 7/15 px windows, plus normalised-difference indices (NDVI, NDWI, MNDWI,
NDBI) where the band names say which band is red, green, NIR or SWIR. Unknown band names simply
give no indices.

Neighbourhood statistics are edge-aware: a window that runs off the tile (or over a non-finite
pixel) averages only the pixels it covers, so a tile's border pixels are not pulled towards zero.
Training and prediction compute features per tile in the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MEAN_WINDOWS_PX = (3, 7, 15, 31)
STD_WINDOWS_PX = (7, 15)
INDEX_MEAN_WINDOWS_PX = (7, 31)

# Spectral roles by band name: Sentinel-2 names and plain words. Ambiguous Landsat names such as
# "B4" (red on Landsat 8, NIR on Landsat 7) are left out on purpose.
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "blue": ("b02", "blue", "b"),
    "green": ("b03", "green", "g"),
    "red": ("b04", "red", "r"),
    "nir": ("b08", "b8a", "nir", "nir08"),
    "swir1": ("b11", "swir1", "swir16"),
}
# name: (first role, second role) for (a - b) / (a + b)
INDICES: dict[str, tuple[str, str]] = {
    "ndvi": ("nir", "red"),
    "ndwi": ("green", "nir"),
    "mndwi": ("green", "swir1"),
    "ndbi": ("swir1", "nir"),
}


def band_roles(bands: Sequence[str]) -> dict[str, int]:
    """Role (``red``, ``nir`` ...) -> band position, for the roles the names identify."""
    lowered = [name.strip().lower() for name in bands]
    roles: dict[str, int] = {}
    for role, names in ROLE_NAMES.items():
        for candidate in names:  # preference order: B08 before B8A
            if candidate in lowered:
                roles[role] = lowered.index(candidate)
                break
    return roles


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a tile gives; see the module docstring."""

    bands: tuple[str, ...]
    indices: tuple[tuple[str, int, int], ...] = ()
    mean_windows: tuple[int, ...] = MEAN_WINDOWS_PX
    std_windows: tuple[int, ...] = STD_WINDOWS_PX
    index_windows: tuple[int, ...] = INDEX_MEAN_WINDOWS_PX

    @classmethod
    def for_bands(cls, bands: Sequence[str]) -> FeatureSpec:
        """The default features for ``bands`` (indices only where the names allow)."""
        roles = band_roles(bands)
        indices = tuple(
            (name, roles[a], roles[b])
            for name, (a, b) in INDICES.items()
            if a in roles and b in roles and roles[a] != roles[b]
        )
        return cls(bands=tuple(bands), indices=indices)

    @property
    def names(self) -> list[str]:
        """One name per feature, in :meth:`compute`'s order."""
        names: list[str] = []
        for band in self.bands:
            names.append(band)
            names += [f"{band}_mean{w}" for w in self.mean_windows]
            names += [f"{band}_std{w}" for w in self.std_windows]
        for name, _, _ in self.indices:
            names.append(name)
            names += [f"{name}_mean{w}" for w in self.index_windows]
        return names

    def __len__(self) -> int:
        per_band = 1 + len(self.mean_windows) + len(self.std_windows)
        return len(self.bands) * per_band + len(self.indices) * (1 + len(self.index_windows))

    def compute(self, image: np.ndarray) -> np.ndarray:
        """Features ``(F, H, W)`` float32 of one tile ``(B, H, W)`` of raw scene values."""
        if image.ndim != 3 or image.shape[0] != len(self.bands):
            raise ValueError(
                f"features need ({len(self.bands)}, H, W) tiles, got shape {image.shape}"
            )
        values = image.astype(np.float64)
        finite = np.asarray(np.isfinite(values).all(axis=0))
        values[:, ~finite] = 0.0
        weight: np.ndarray = finite.astype(np.float64)
        counts = {w: _box_sum(weight, w) for w in {*self.mean_windows, *self.std_windows}}
        out = np.empty((len(self), *image.shape[1:]), np.float32)
        row = 0
        for band in values:
            out[row] = band
            row += 1
            for w in self.mean_windows:
                out[row] = _safe_divide(_box_sum(band, w), counts[w])
                row += 1
            # Centred first: E[x^2] - E[x]^2 of raw uint16 values loses digits.
            centred: np.ndarray = (band - band[finite].mean()) * weight if finite.any() else band
            for w in self.std_windows:
                mean = _safe_divide(_box_sum(centred, w), counts[w])
                square = _safe_divide(_box_sum(centred * centred, w), counts[w])
                out[row] = np.sqrt(np.maximum(square - mean * mean, 0.0))
                row += 1
        if self.indices:
            index_counts = {w: _box_sum(weight, w) for w in self.index_windows}
            for _, a, b in self.indices:
                index = _safe_divide(values[a] - values[b], values[a] + values[b])
                out[row] = index
                row += 1
                for w in self.index_windows:
                    out[row] = _safe_divide(_box_sum(index * weight, w), index_counts[w])
                    row += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "bands": list(self.bands),
            "indices": [list(i) for i in self.indices],
            "mean_windows": list(self.mean_windows),
            "std_windows": list(self.std_windows),
            "index_windows": list(self.index_windows),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeatureSpec:
        return cls(
            bands=tuple(raw["bands"]),
            indices=tuple((str(n), int(a), int(b)) for n, a, b in raw.get("indices", [])),
            mean_windows=tuple(int(w) for w in raw.get("mean_windows", MEAN_WINDOWS_PX)),
            std_windows=tuple(int(w) for w in raw.get("std_windows", STD_WINDOWS_PX)),
            index_windows=tuple(int(w) for w in raw.get("index_windows", INDEX_MEAN_WINDOWS_PX)),
        )


def _box_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sum over the ``window`` x ``window`` box centred on each pixel, zero outside (cumsums)."""
    half = window // 2
    padded = np.pad(values, ((half + 1, half), (half + 1, half)))
    table = padded.cumsum(axis=0).cumsum(axis=1)
    rows, cols = values.shape
    return (
        table[window : window + rows, window : window + cols]
        - table[:rows, window : window + cols]
        - table[window : window + rows, :cols]
        + table[:rows, :cols]
    )


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(
        numerator, denominator, out=np.zeros_like(numerator), where=np.abs(denominator) > 1e-12
    )


def tile_features(spec: FeatureSpec, batch: np.ndarray) -> np.ndarray:
    """Features of a batch ``(N, B, H, W)`` as rows ``(N * H * W, F)`` float32, pixel-major."""
    count, _, rows, cols = batch.shape
    out = np.empty((count, rows * cols, len(spec)), np.float32)
    for i, tile in enumerate(batch):
        out[i] = spec.compute(tile).reshape(len(spec), -1).T
    return out.reshape(-1, len(spec))


__all__ = ["FeatureSpec", "band_roles", "tile_features"]
