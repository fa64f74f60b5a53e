"""Training segmentation models on a tile store (``geotiler train``).

- :mod:`~geotiler.train.data`: the loaders over the Zarr store (whole batches, read in runs)
- :mod:`~geotiler.train.batches`: shard-local batch order; :mod:`~geotiler.train.augment`:
  normalisation and D4 augmentation on the training device
- :mod:`~geotiler.train.fingerprint`, :mod:`~geotiler.train.recipe`: the store's fingerprint and
  the plan chosen from it (model, batch, lr, loss, weights, how long; robust band statistics)
- :mod:`~geotiler.train.budget`: training to a time budget (steps that fit, one-cycle over them)
- :mod:`~geotiler.train.features`, :mod:`~geotiler.train.baseline`: the per-pixel LightGBM
  baseline; :mod:`~geotiler.train.ensemble`: it, the network and their average on the same
  validation pixels; :mod:`~geotiler.train.pixel_run`: ``--model pixel-gbm``
- :mod:`~geotiler.train.models`: architectures (registry) and YAML presets
- :mod:`~geotiler.train.losses`, :mod:`~geotiler.train.metrics`: losses and epoch metrics
- :mod:`~geotiler.train.trainer`: the loop (:mod:`~geotiler.train.companions` runs beside it);
  :mod:`~geotiler.train.checkpoint`: its files

Importing this package is cheap; the heavy modules load when used.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from geotiler import StageModule

if TYPE_CHECKING:
    from geotiler.train.checkpoint import load_checkpoint
    from geotiler.train.settings import TrainSettings
    from geotiler.train.trainer import train

__all__ = ["TrainSettings", "load_checkpoint", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from geotiler.train.trainer import train

        return train
    if name == "load_checkpoint":
        from geotiler.train.checkpoint import load_checkpoint

        return load_checkpoint
    if name == "TrainSettings":
        from geotiler.train.settings import TrainSettings

        return TrainSettings
    raise AttributeError(name)


# geotiler.train(...) calls the API function (see geotiler.StageModule).
sys.modules[__name__].__class__ = StageModule
