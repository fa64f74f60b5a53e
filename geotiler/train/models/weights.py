"""Pretrained encoder weights from local files, with the bands they were trained on.

:func:`apply_encoder_weights` loads, into a model's encoder:

- torchvision / timm ResNet state dicts (``.pth``: ``conv1.weight``, ``layer1.0.conv1.weight``
  ...), including torchgeo's Sentinel-2 and Landsat ResNets (SSL4EO-S12, SSL4EO-L);
- Hugging Face MiT / SegFormer ``model.safetensors`` (``segformer.encoder.*``; a fine-tuned
  SegFormer's ``decode_head.*`` too, except a classifier for another number of classes).

The bands a file was trained on come from a sidecar YAML next to it (``FILE.yaml`` or
``FILE.pth.yaml``: ``bands: [...]``, optional ``mean``/``std``), else from
:data:`KNOWN_WEIGHTS` by file name, else (three input channels) ImageNet RGB. The first
convolution is then rebuilt for the store's bands by name (:mod:`.first_conv`). Nothing is
downloaded: a missing file is an error that says where such weights come from.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor, nn

from geotiler.errors import InputError
from geotiler.train.models.first_conv import BandMapping, map_first_conv
from geotiler.train.models.resnet import ResNet
from geotiler.train.models.segformer import SegFormer

log = logging.getLogger(__name__)

WHERE_FROM = (
    "download such weights yourself (nothing is downloaded at run time): torchvision ResNets from "
    "https://download.pytorch.org/models/ (e.g. resnet50-11ad3fa6.pth), torchgeo's Sentinel-2/"
    "Landsat ResNets from https://huggingface.co/torchgeo (e.g. resnet50_sentinel2_all_moco), "
    "MiT/SegFormer model.safetensors from https://huggingface.co/nvidia/mit-b0"
)


@dataclass(frozen=True)
class WeightsSpec:
    """What a weights file was trained on: band names and the input normalisation it expects."""

    bands: tuple[str, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    origin: str = ""


IMAGENET = WeightsSpec(
    ("red", "green", "blue"),
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
    "ImageNet RGB (values scaled to 0..1, then this mean/std)",
)
_S2_ALL = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
_OLI_SR = ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7")
_ETM_SR = ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7")


def _scaled(bands: tuple[str, ...], divisor: float, origin: str) -> WeightsSpec:
    return WeightsSpec(bands, (0.0,) * len(bands), (divisor,) * len(bands), origin)


# File-name prefixes (the hash suffix varies) of weights whose bands are known.
KNOWN_WEIGHTS: dict[str, WeightsSpec] = {
    **{f"resnet{d}-": IMAGENET for d in (18, 34, 50, 101)},  # torchvision
    **{
        f"resnet{d}_sentinel2_all_{m}": _scaled(_S2_ALL, 10000, "torchgeo SSL4EO-S12, S2 L1C / 1e4")
        for d in (18, 50)
        for m in ("moco", "dino", "decur")
    },
    **{
        f"resnet{d}_sentinel2_rgb_moco": _scaled(
            ("B04", "B03", "B02"), 10000, "torchgeo SSL4EO-S12 RGB, S2 / 1e4"
        )
        for d in (18, 50)
    },
    **{
        f"resnet{d}_landsat_oli_sr_{m}": _scaled(_OLI_SR, 255, "torchgeo SSL4EO-L OLI SR, 8-bit")
        for d in (18, 50)
        for m in ("moco", "simclr")
    },
    **{
        f"resnet{d}_landsat_etm_sr_{m}": _scaled(_ETM_SR, 255, "torchgeo SSL4EO-L ETM+ SR, 8-bit")
        for d in (18, 50)
        for m in ("moco", "simclr")
    },
}


class _Sidecar(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bands: list[str]
    mean: list[float] | None = None
    std: list[float] | None = None
    description: str = ""


@dataclass(frozen=True)
class LoadedWeights:
    """What :func:`apply_encoder_weights` did: the file, its spec and the band mapping."""

    path: Path
    spec: WeightsSpec
    mapping: BandMapping
    tensors: int

    def record(self) -> dict[str, Any]:
        """Plain values for the checkpoint (``encoder_weights``)."""
        return {
            "file": str(self.path),
            "bands": list(self.spec.bands),
            "mean": None if self.spec.mean is None else list(self.spec.mean),
            "std": None if self.spec.std is None else list(self.spec.std),
            "origin": self.spec.origin,
            "mapping": self.mapping.as_dict(),
        }

    def describe(self) -> str:
        return (
            f"encoder weights {self.path.name} ({self.spec.origin}; {self.tensors} tensors): "
            f"{self.mapping.describe()}"
        )


def apply_encoder_weights(
    model: nn.Module, path: str | os.PathLike[str], *, bands: Sequence[str]
) -> LoadedWeights:
    """Load the pretrained encoder at ``path`` into ``model``, mapping its bands onto ``bands``.

    Raises:
        InputError: missing or unreadable file, weights of another architecture or depth, or
            weights whose band list is unknown and cannot be guessed.
    """
    where = Path(path)
    if not where.is_file():
        raise InputError(f"{where}: encoder weights not found; {WHERE_FROM}")
    state = read_state_dict(where)
    if isinstance(model, SegFormer):
        return _load_segformer(model, where, state, bands)
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, ResNet):
        return _load_resnet(encoder, where, state, bands)
    raise InputError(
        f"{where}: encoder weights need a model with a ResNet or MiT encoder "
        "(e.g. --model unet-resnet34 or segformer-b0), not this one"
    )


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a ``.safetensors`` file or a torch state dict (``state_dict`` unwrapped)."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise InputError(
                f"{path}: reading .safetensors needs the safetensors package: "
                "pip install 'geotiler[safetensors]'"
            ) from None
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:
            raise InputError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(
            f"{path}: not a readable PyTorch state dict ({type(exc).__name__})"
        ) from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state dict of tensors")
    return dict(state)


def weights_spec(
    path: Path, channels: int, bands: Sequence[str], *, default: WeightsSpec | None = None
) -> WeightsSpec:
    """The bands ``path`` was trained on: sidecar YAML, known file names, ``default``, a guess."""
    for sidecar in (path.with_name(path.name + ".yaml"), path.with_suffix(".yaml")):
        if sidecar.is_file():
            return _read_sidecar(sidecar)
    for prefix, spec in KNOWN_WEIGHTS.items():
        if path.name.startswith(prefix):
            return spec
    if default is not None and len(default.bands) == channels:
        return default
    if channels == 3:
        log.warning("%s: no band list known; assuming ImageNet RGB (red, green, blue)", path)
        return WeightsSpec(IMAGENET.bands, IMAGENET.mean, IMAGENET.std, "assumed ImageNet RGB")
    if channels == len(bands):
        log.warning("%s: no band list known; assuming the store's bands in its order", path)
        return WeightsSpec(tuple(bands), origin="assumed the store's bands")
    raise InputError(
        f"{path}: weights for {channels} bands, but which bands is unknown; write "
        f"{path.name}.yaml next to it with 'bands: [...]' ({channels} names, e.g. B01, B02, ...) "
        "and optionally 'mean: [...]' and 'std: [...]'"
    )


def _read_sidecar(path: Path) -> WeightsSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        sidecar = _Sidecar.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) if len(first) > 1 else str(exc)
        raise InputError(f"{path}: not a valid weights sidecar ({detail})") from exc
    for name in ("mean", "std"):
        values = getattr(sidecar, name)
        if values is not None and len(values) != len(sidecar.bands):
            raise InputError(
                f"{path}: {name} has {len(values)} values for {len(sidecar.bands)} bands"
            )
    return WeightsSpec(
        tuple(sidecar.bands),
        None if sidecar.mean is None else tuple(sidecar.mean),
        None if sidecar.std is None else tuple(sidecar.std),
        sidecar.description or f"sidecar {path.name}",
    )


def _first_conv(
    path: Path,
    state: dict[str, Tensor],
    key: str,
    bands: Sequence[str],
    default: WeightsSpec | None = None,
) -> tuple[WeightsSpec, BandMapping]:
    weight = state[key]
    spec = weights_spec(path, int(weight.shape[1]), bands, default=default)
    if len(spec.bands) != weight.shape[1]:
        raise InputError(
            f"{path}: the first convolution takes {weight.shape[1]} bands but its band list "
            f"({spec.origin}) names {len(spec.bands)}"
        )
    state[key], mapping = map_first_conv(weight, spec.bands, bands)
    if not any(s is not None for s in mapping.sources):
        log.warning("%s: none of the bands %s is known to the weights", path, ", ".join(bands))
    return spec, mapping


_RESNET_PREFIXES = ("", "module.", "encoder.", "backbone.", "model.")


def _load_resnet(
    encoder: ResNet, path: Path, state: dict[str, Tensor], bands: Sequence[str]
) -> LoadedWeights:
    prefix = next((p for p in _RESNET_PREFIXES if f"{p}conv1.weight" in state), None)
    if prefix is None:
        raise InputError(
            f"{path}: not a ResNet state dict (no conv1.weight); pass torchvision, timm or "
            f"torchgeo resnet{encoder.depth} weights"
        )
    state = {
        key[len(prefix) :]: value
        for key, value in state.items()
        if key.startswith(prefix) and not key[len(prefix) :].startswith("fc.")
    }
    spec, mapping = _first_conv(path, state, "conv1.weight", bands)
    _check_fits(encoder, state, path, f"a resnet{encoder.depth} encoder", f"resnet{encoder.depth}")
    encoder.load_state_dict(state, strict=True)
    loaded = LoadedWeights(path, spec, mapping, len(state))
    log.info("%s", loaded.describe())
    return loaded


_MIT = "segformer.encoder."
# nvidia/mit-b* and the SegFormers fine-tuned from them take ImageNet-normalised RGB.
_HF_MIT = WeightsSpec(
    IMAGENET.bands, IMAGENET.mean, IMAGENET.std, "Hugging Face MiT/SegFormer, ImageNet RGB"
)


def _load_segformer(
    model: SegFormer, path: Path, state: dict[str, Tensor], bands: Sequence[str]
) -> LoadedWeights:
    if not any(key.startswith(_MIT) for key in state):
        raise InputError(
            f"{path}: not a Hugging Face MiT/SegFormer state dict (no {_MIT}* tensors); pass "
            "the model.safetensors of nvidia/mit-b0 (or b1, b2) or of a fine-tuned SegFormer"
        )
    encoder_state = {k[len(_MIT) :]: v for k, v in state.items() if k.startswith(_MIT)}
    spec, mapping = _first_conv(
        path, encoder_state, "patch_embeddings.0.proj.weight", bands, _HF_MIT
    )
    encoder = model.segformer.encoder
    sizes = "/".join(str(size) for size in encoder.hidden_sizes)
    _check_fits(encoder, encoder_state, path, f"this MiT encoder (widths {sizes})", "same-size MiT")
    encoder.load_state_dict(encoder_state, strict=True)
    tensors = len(encoder_state) + _load_decoder(model, path, state)
    loaded = LoadedWeights(path, spec, mapping, tensors)
    log.info("%s", loaded.describe())
    return loaded


def _load_decoder(model: SegFormer, path: Path, state: dict[str, Tensor]) -> int:
    """A fine-tuned SegFormer's decoder where it fits (its classifier: same classes only)."""
    head = {k[len("decode_head.") :]: v for k, v in state.items() if k.startswith("decode_head.")}
    if not head:
        return 0
    own = model.decode_head.state_dict()
    fitting = {k: v for k, v in head.items() if k in own and own[k].shape == v.shape}
    wrong = sorted(k for k in set(head) - set(fitting) if not k.startswith("classifier."))
    if wrong or set(own) - set(head):
        raise InputError(
            f"{path}: its decode_head does not fit this SegFormer (e.g. {(wrong or ['?'])[:2]}); "
            "pick the preset of the same size (segformer-b0, -b1 or -b2)"
        )
    model.decode_head.load_state_dict(fitting, strict=False)
    skipped = sorted(set(head) - set(fitting))
    if skipped:
        log.info("%s: kept this model's own %s (other classes)", path, ", ".join(skipped))
    return len(fitting)


def _check_fits(
    module: nn.Module, state: dict[str, Tensor], path: Path, what: str, wanted: str
) -> None:
    own = module.state_dict()
    for key in set(own) - set(state):
        if key.endswith("num_batches_tracked"):  # absent from old torchvision files
            state[key] = own[key]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        detail = (missing or unexpected or wrong)[:3]
        raise InputError(
            f"{path}: does not fit {what} ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(wrong)} mis-shaped keys, e.g. {detail}); pass {wanted} weights"
        )
