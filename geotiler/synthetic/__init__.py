"""The generated mini-Catalonia dataset: the demo data and the test bed of every stage.

A vector landscape (coast, rivers, lakes, fields, forest, towns with streets, industry, a quarry,
a nodata corner) is rasterised at 1 m into a class mask (``catalonia12`` ids), and mixed into
Sentinel-2-like 10 m scenes for April and August with clouds, shadows and their cloud masks.
See :func:`generate` (write into a folder) and :func:`ensure_demo` (a catalog dataset, made on
first use).
"""

from __future__ import annotations

from geotiler.synthetic.dataset import ensure_demo, ensure_generated, is_current, synthesize
from geotiler.synthetic.generate import FileNames, SynthResult, generate

__all__ = [
    "FileNames",
    "SynthResult",
    "ensure_demo",
    "ensure_generated",
    "generate",
    "is_current",
    "synthesize",
]
