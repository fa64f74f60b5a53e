"""geotiler: satellite scenes and land-cover masks to training tiles, models and maps.

The stages as Python calls (each the function the CLI command calls; see :mod:`geotiler.api`)::

    import geotiler

    store = geotiler.tile("scene.tif", "mask.tif", output="tiles.zarr", size=64)
    run = geotiler.train(store, "run", model="unet-tiny", epochs=5)
    geotiler.predict("scene.tif", "map.tif", model=run.run_dir / "best.pt")
    report = geotiler.evaluate("map.tif", "mask.tif", "report")

They are imported on first use, so ``import geotiler`` stays fast and loads neither torch nor
dask. ``geotiler.train``, ``geotiler.predict`` and ``geotiler.evaluate`` are also the stages'
modules (Python sets a submodule as its package's attribute once imported, so a function of the
same name could not stay there): those modules are callable (:class:`StageModule`) and calling
one calls the API function. ``geotiler.rescale`` is a subpackage too; its API function is
``geotiler.rescale_mask``.
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = ("tile", "train", "predict", "evaluate", "open_store", "rescale_mask")
_STAGE_MODULES = ("train", "predict", "evaluate")
__all__ = [
    "__version__", "evaluate", "open_store", "predict", "rescale_mask", "tile", "train",
]  # fmt: skip

if TYPE_CHECKING:
    from geotiler.api import evaluate, open_store, predict, rescale_mask, tile, train


class StageModule(types.ModuleType):
    """A stage's module that is also its API function: ``geotiler.predict(...)`` calls
    :func:`geotiler.api.predict` whether or not ``geotiler.predict`` (the module) was imported."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from geotiler import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _STAGE_MODULES:
        return importlib.import_module(f"geotiler.{name}")
    if name in _API:
        from geotiler import api

        return getattr(api, name)
    raise AttributeError(f"module 'geotiler' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
