"""What ``--help`` shows, decided in one place for every command.

Typer renders what the command modules declare; this module finishes a command's help just before
it is shown (:func:`polish`, called by the CLI's group when ``--help`` is asked for):

- the defaults: an option left at ``None`` on the command line ("not given") shows the default of
  the stage's settings field it feeds (``[default: 0.1]``), or what ``None`` means there (the
  field description's ``None: ...``), so the defaults are written once, in the settings models;
- registry names: an option naming a pluggable thing (a loss, a model, a filter, a balancer...)
  lists the names its registry holds now, so the help cannot fall behind the code;
- no ``<bool>`` placeholder after a flag, and no square brackets eaten as rich markup;
- paragraphs of a command's description flow to the terminal's width instead of keeping the
  docstring's line breaks (a paragraph starting with ``\\b`` keeps them, as in click).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any, get_args

from rich.markup import escape

# command -> (module, settings model) whose fields the command's options feed
STAGE_SETTINGS = {
    "train": ("geotiler.train.settings", "TrainSettings"),
    "tile": ("geotiler.tiles.settings", "TileSettings"),
    "rescale": ("geotiler.rescale", "RescaleSettings"),
    "predict": ("geotiler.predict", "PredictSettings"),
}
# option parameter -> settings field, where the names differ
FIELD_OF = {"time_budget": "time"}
_NONE_MEANS = re.compile(r"(?:None|default):?\s+([^;)]+)")


def _losses() -> list[str]:
    from geotiler.train.losses import LOSSES

    return list(LOSSES)


def _models() -> list[str]:
    from geotiler.train.models import available_presets
    from geotiler.train.settings import PIXEL_MODEL

    return [*available_presets(), PIXEL_MODEL]


def _filters() -> list[str]:
    from geotiler.tiles.filters import FILTERS

    return list(FILTERS)


def _balancers() -> list[str]:
    from geotiler.tiles.balance import BALANCERS

    return list(BALANCERS)


def _optimizers() -> list[str]:
    from geotiler.train.optim import OPTIMIZERS

    return list(OPTIMIZERS)


def _lr_schedules() -> list[str]:
    from geotiler.train.settings import LrScheduleName

    return list(get_args(LrScheduleName))


def _rescale_methods() -> list[str]:
    from geotiler.rescale.methods import METHODS

    return list(METHODS)


# (command, option parameter) -> what its names are called, and the registry that holds them
REGISTRIES: dict[tuple[str, str], tuple[str, Callable[[], list[str]]]] = {
    ("train", "loss"): ("loss terms", _losses),
    ("train", "model"): ("models", _models),
    ("train", "optimizer"): ("optimizers", _optimizers),
    ("train", "lr_schedule"): ("schedules", _lr_schedules),
    ("tile", "filters"): ("filters", _filters),
    ("tile", "balance"): ("balancing", _balancers),
    ("rescale", "method"): ("methods", _rescale_methods),
}


def polish(command: Any, name: str, ctx: Any) -> None:
    """Finish ``command``'s help in place (idempotent: a command is polished once)."""
    if getattr(command, "_geotiler_polished", False):
        return
    command._geotiler_polished = True
    command.help = unwrap(command.help or "")
    fields = _settings_fields(name)
    for param in [*command.params, command.get_help_option(ctx)]:
        if param is None:
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""  # a flag takes no value: no <bool> placeholder
        if param.param_type_name != "option":
            param.help = escape(param.help or "")
            continue
        text = param.help or ""
        if (name, param.name) in REGISTRIES:
            what, names = REGISTRIES[(name, param.name)]
            known = names()
            if not all(n in text for n in known):
                text = f"{text} Known {what}: {', '.join(known)}."
        default = _default_text(param, fields.get(FIELD_OF.get(param.name, param.name)))
        if default is not None and "default" not in text.lower() and f"[{default}]" not in text:
            text = f"{text} [default: {default}]"
        param.help = escape(text)


def unwrap(text: str) -> str:
    """Join the lines of each paragraph (blank-line separated); ``\\b`` paragraphs keep theirs."""
    paragraphs = text.strip().split("\n\n")
    return "\n\n".join(
        p.lstrip().removeprefix("\b").strip("\n")
        if p.lstrip().startswith("\b")
        else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def _settings_fields(command: str) -> dict[str, Any]:
    if command not in STAGE_SETTINGS:
        return {}
    module, model = STAGE_SETTINGS[command]
    return dict(getattr(importlib.import_module(module), model).model_fields)


def _default_text(param: Any, field: Any) -> str | None:
    """The default to show for an option whose own default is ``None`` ("not given")."""
    if param.default is not None or field is None:
        return None
    value = field.get_default(call_default_factory=True)
    if isinstance(value, bool):  # the flag in force; a plain flag that is off goes unsaid
        flags = param.opts if value else param.secondary_opts
        return flags[0] if flags else None
    if value not in (None, (), [], {}):
        return str(value)
    found = _NONE_MEANS.search(field.description or "")
    return found.group(1).strip() if found else None
