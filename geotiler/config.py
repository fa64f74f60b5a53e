"""Typed stage settings and their precedence.

Each stage declares its settings as a :class:`StageSettings` model (unknown keys rejected). The
value of a setting comes from, highest first: the command line, the pipeline YAML's section for the
stage, the catalog's dataset entry, the model's default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from geotiler.catalog import describe_validation_error
from geotiler.errors import CatalogError

PIPELINE_KEYS = ("dataset", "description", "rescale", "tile", "train", "predict", "evaluate")


class StageSettings(BaseModel):
    """Base of every stage's settings: frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Settings = TypeVar("Settings", bound=StageSettings)


def load_pipeline(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Read a pipeline YAML (stage name -> settings); ``None`` gives an empty pipeline."""
    if path is None:
        return {}
    where = Path(path)
    if not where.is_file():
        raise CatalogError(f"{where}: pipeline file not found")
    try:
        raw = yaml.safe_load(where.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CatalogError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: a pipeline must be a mapping of stage name to settings")
    for key, value in raw.items():
        if key not in PIPELINE_KEYS:
            raise CatalogError(
                f"{where}: {key}: unknown pipeline section (known: {', '.join(PIPELINE_KEYS)})"
            )
        if key not in ("dataset", "description") and not isinstance(value, dict | None):
            raise CatalogError(f"{where}: {key}: must be a mapping of settings")
    raw["__file__"] = str(where)
    return raw


def resolve_settings(
    model: type[Settings],
    *,
    stage: str,
    cli: Mapping[str, Any] | None = None,
    pipeline: Mapping[str, Any] | None = None,
    dataset_defaults: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the layers (``None`` values on the command line mean "not given") and validate."""
    merged: dict[str, Any] = dict(dataset_defaults or {})
    section = (pipeline or {}).get(stage) or {}
    merged.update(section)
    merged.update({key: value for key, value in (cli or {}).items() if value is not None})
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        where = (pipeline or {}).get("__file__", "settings")
        raise CatalogError(
            f"{where}: {describe_validation_error(exc, root=stage, known=model.model_fields)}"
        ) from exc
