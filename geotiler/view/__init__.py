"""``geotiler view``: a local web map of scenes, maps and tile stores, and the corrections loop.

Needs the ``view`` extra (``pip install 'geotiler[view]'``: bokeh for the page, rio-tiler for the
tiles). :mod:`geotiler.view.corrections` needs only the core dependencies, so training on
corrections works without the extra.
"""

from __future__ import annotations

from geotiler.errors import GeotilerError

VIEW_PACKAGES = {"bokeh": "bokeh", "rio_tiler": "rio-tiler"}


class MissingExtraError(GeotilerError, ImportError):
    """An optional dependency of a command is not installed."""


def require_view_packages() -> None:
    """Raise a one-line error naming what to install when the view extra is missing."""
    import importlib.util

    missing = [
        pip for module, pip in VIEW_PACKAGES.items() if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise MissingExtraError(
            f"geotiler view needs {', '.join(missing)}: pip install 'geotiler[view]'"
        )
