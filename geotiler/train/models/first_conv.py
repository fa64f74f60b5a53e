"""A pretrained first convolution rebuilt for the store's bands, matched by band NAME.

Pretrained filters know the bands they were trained on (ImageNet: red, green, blue; SSL4EO-S12:
Sentinel-2 B01..B12 with B8A). Each input band takes the filter of the band with the same name
(``B4`` and ``B04`` are the same Sentinel-2 band) or, failing that, of the same colour
(``B04`` is red, ``B03`` green, ``B02`` blue, ``B08`` near infrared), wherever it sits in the
file. A band the weights do not know gets the mean filter scaled by ``weights bands / input
bands``, so a flat input keeps the response scale when no band is known. Filters of known bands
are copied unchanged: the pretrained response to those bands is kept exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

_SENTINEL2 = re.compile(r"B0?(8A|\d{1,2})")

# Colour names, and the Sentinel-2 bands with that colour. Landsat names (SR_B4 is red on OLI
# but near infrared on ETM+) are matched by exact name only.
_ROLES: dict[str, str] = {
    **dict.fromkeys(("RED", "R", "B04"), "red"),
    **dict.fromkeys(("GREEN", "G", "B03"), "green"),
    **dict.fromkeys(("BLUE", "B", "B02"), "blue"),
    **dict.fromkeys(("NIR", "N", "B08"), "nir"),
}


def canonical_band(name: str) -> str:
    """Upper case, with Sentinel-2 numbers zero-padded: ``b4`` -> ``B04``, ``B8a`` -> ``B8A``."""
    text = name.strip().upper()
    match = _SENTINEL2.fullmatch(text)
    if match is None:
        return text
    number = match.group(1)
    return "B8A" if number == "8A" else f"B{int(number):02d}"


def band_role(name: str) -> str | None:
    """The colour a band name stands for (``red``, ``green``, ``blue``, ``nir``) or None."""
    return _ROLES.get(canonical_band(name))


@dataclass(frozen=True)
class BandMapping:
    """Which pretrained band feeds each input band (None: the scaled mean filter)."""

    input_bands: tuple[str, ...]
    weight_bands: tuple[str, ...]
    sources: tuple[int | None, ...]
    unknown_scale: float

    def as_dict(self) -> dict[str, str | None]:
        """``{input band: pretrained band or None}`` (what checkpoints store)."""
        return {
            band: None if source is None else self.weight_bands[source]
            for band, source in zip(self.input_bands, self.sources, strict=True)
        }

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(b for b, s in zip(self.input_bands, self.sources, strict=True) if s is None)

    def describe(self) -> str:
        """One line: ``B02<-blue, B03<-green, B04<-red, B08<-mean x0.75``."""
        parts = [
            f"{band}<-{'mean x' + format(self.unknown_scale, '.3g') if source is None else source}"
            for band, source in self.as_dict().items()
        ]
        return ", ".join(parts)


def match_bands(input_bands: Sequence[str], weight_bands: Sequence[str]) -> tuple[int | None, ...]:
    """For each input band, the index of the pretrained band with its name or colour, or None."""
    by_name = {canonical_band(b): i for i, b in enumerate(weight_bands)}
    by_role: dict[str, int] = {}
    for i, band in enumerate(weight_bands):
        role = band_role(band)
        if role is not None:
            by_role.setdefault(role, i)
    sources: list[int | None] = []
    for band in input_bands:
        source = by_name.get(canonical_band(band))
        role = band_role(band)
        if source is None and role is not None:
            source = by_role.get(role)
        sources.append(source)
    return tuple(sources)


def map_first_conv(
    weight: Tensor, weight_bands: Sequence[str], input_bands: Sequence[str]
) -> tuple[Tensor, BandMapping]:
    """``(O, len(weight_bands), k, k)`` filters -> ``(O, len(input_bands), k, k)`` by band name.

    Raises:
        ValueError: when the filters do not have one input channel per pretrained band.
    """
    if weight.shape[1] != len(weight_bands):
        raise ValueError(
            f"the first convolution takes {weight.shape[1]} bands but {len(weight_bands)} band "
            f"names were given ({', '.join(weight_bands)})"
        )
    sources = match_bands(input_bands, weight_bands)
    scale = len(weight_bands) / len(input_bands)
    mean = weight.mean(dim=1) * scale
    channels = [mean if source is None else weight[:, source] for source in sources]
    mapping = BandMapping(tuple(input_bands), tuple(weight_bands), sources, scale)
    return torch.stack(channels, dim=1).contiguous(), mapping
