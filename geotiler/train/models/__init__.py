"""Segmentation models: a registry of architectures and the YAML presets in ``models/``.

``get_model(name, in_channels=B, num_classes=K, **arguments)`` builds an architecture. A preset
(``models/<preset>.yaml``) names an architecture, its arguments and optional training
hyper-parameters::

    description: small U-Net, fast on CPU
    architecture: unet
    arguments: {widths: [16, 32, 64, 128, 256]}
    train: {lr: 0.003, batch_size: 16}

Presets are looked up as a YAML path, then in ``./models/``, then in the repository's
``models/``; an architecture name with no preset file is a preset with default arguments.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from geotiler.errors import CatalogError
from geotiler.train.models.deeplab import DeepLabV3, DeepLabV3Plus
from geotiler.train.models.segformer import MIT_CONFIGS, SegFormer
from geotiler.train.models.unet import UNet
from geotiler.train.models.unet_resnet import UNetResNet
from geotiler.train.models.unetplusplus import UNetPlusPlus
from geotiler.train.models.weights import LoadedWeights, apply_encoder_weights

ModelFactory = Callable[..., nn.Module]

MODELS: dict[str, ModelFactory] = {
    "unet": UNet,
    "unet-resnet18": partial(UNetResNet, depth=18),
    "unet-resnet34": partial(UNetResNet, depth=34),
    "unet-resnet50": partial(UNetResNet, depth=50),
    "unet-resnet101": partial(UNetResNet, depth=101),
    "unetplusplus-resnet34": partial(UNetPlusPlus, depth=34),
    "deeplabv3-resnet50": partial(DeepLabV3, depth=50),
    "deeplabv3-resnet101": partial(DeepLabV3, depth=101),
    "deeplabv3plus-resnet50": partial(DeepLabV3Plus, depth=50),
    **{f"segformer-{size}": partial(SegFormer, **config) for size, config in MIT_CONFIGS.items()},
}

# Where each architecture keeps its (pretrainable) encoder, for freezing and its own LR.
ENCODERS: dict[type[nn.Module], str] = {
    UNetResNet: "encoder",
    UNetPlusPlus: "encoder",
    DeepLabV3: "encoder",
    DeepLabV3Plus: "encoder",
    SegFormer: "segformer.encoder",
}

# ./models first (a user's own presets), then the presets packaged with geotiler.
PRESET_DIRS: tuple[Path, ...] = (
    Path("models"),
    Path(__file__).resolve().parents[2] / "data" / "models",
)


def get_model(name: str, *, in_channels: int, num_classes: int, **arguments: Any) -> nn.Module:
    """Build architecture ``name``; unknown names or arguments raise CatalogError."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise CatalogError(
            f"unknown model architecture {name!r} (known: {', '.join(MODELS)})"
        ) from None
    try:
        return factory(in_channels, num_classes, **arguments)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"model {name!r}: bad arguments {arguments} ({exc})") from exc


@dataclass(frozen=True)
class Preset:
    """A model preset: architecture, its arguments and training hyper-parameter defaults."""

    name: str
    architecture: str
    arguments: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def build(self, in_channels: int, num_classes: int) -> nn.Module:
        return get_model(
            self.architecture, in_channels=in_channels, num_classes=num_classes, **self.arguments
        )


def available_presets() -> list[str]:
    """Preset names found in the preset folders, plus the bare architecture names."""
    names = {p.stem for folder in PRESET_DIRS if folder.is_dir() for p in folder.glob("*.yaml")}
    return sorted(names | set(MODELS))


def load_preset(name: str | os.PathLike[str]) -> Preset:
    """The preset called ``name`` (or the YAML file at that path); CatalogError when unknown."""
    text = os.fspath(name)
    candidates = [Path(text)] if text.endswith((".yaml", ".yml")) else []
    candidates += [folder / f"{text}.yaml" for folder in PRESET_DIRS]
    for path in candidates:
        if path.is_file():
            return _read_preset(path)
    if text in MODELS:
        return Preset(name=text, architecture=text)
    raise CatalogError(
        f"unknown model preset {text!r} (known: {', '.join(available_presets())}; "
        "or give a path to a preset YAML)"
    )


def _read_preset(path: Path) -> Preset:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: a model preset must be a mapping")
    unknown = set(raw) - {"description", "architecture", "arguments", "train"}
    if unknown:
        raise CatalogError(f"{path}: {sorted(unknown)[0]}: unknown key (typo?)")
    architecture = raw.get("architecture")
    if architecture not in MODELS:
        raise CatalogError(
            f"{path}: architecture {architecture!r} is unknown (known: {', '.join(MODELS)})"
        )
    for key in ("arguments", "train"):
        if not isinstance(raw.get(key) or {}, dict):
            raise CatalogError(f"{path}: {key}: must be a mapping")
    return Preset(
        name=path.stem,
        architecture=architecture,
        arguments=dict(raw.get("arguments") or {}),
        train=dict(raw.get("train") or {}),
        description=str(raw.get("description", "")),
    )


def encoder_of(model: nn.Module) -> nn.Module | None:
    """The encoder sub-module of ``model`` (None for architectures without one, e.g. unet)."""
    path = ENCODERS.get(type(model))
    return None if path is None else model.get_submodule(path)


__all__ = [
    "MODELS",
    "LoadedWeights",
    "Preset",
    "apply_encoder_weights",
    "available_presets",
    "encoder_of",
    "get_model",
    "load_preset",
]
