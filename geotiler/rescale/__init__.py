"""The rescale stage: a class mask onto another grid, out of core (categorical downsampling).

:mod:`~geotiler.rescale.run` runs it (:func:`rescale`, :func:`rescale_with_settings`),
:mod:`~geotiler.rescale.plan` plans windows aligned to the source's blocks,
:mod:`~geotiler.rescale.methods` computes a window by each method (near, mode, weighted mode),
:mod:`~geotiler.rescale.kernels` holds the numba block-mode kernels and
:mod:`~geotiler.rescale.rawstrips` reads uncompressed strip files directly.
"""

from geotiler.rescale.run import (
    RescaleResult,
    RescaleSettings,
    rescale,
    rescale_with_settings,
    target_grid,
)

__all__ = ["RescaleResult", "RescaleSettings", "rescale", "rescale_with_settings", "target_grid"]
