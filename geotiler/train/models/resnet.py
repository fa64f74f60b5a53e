"""ResNet-18/34/50 encoders whose parameter names match torchvision's ``resnet`` models.

Matching names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0`` ...) let
:func:`load_encoder_weights` load an ImageNet state dict saved by torchvision from a local file
(``fc`` is ignored). The first convolution takes any number of bands; pretrained RGB filters are
spread over them (cycled and rescaled by 3/B, so the response to a flat input keeps its scale).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from geotiler.errors import InputError

ResNetDepth = Literal[18, 34, 50]


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(cin, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes * 4, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


LAYOUTS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """A ResNet trunk without ``avgpool``/``fc``; :meth:`forward` returns the five feature maps.

    Args:
        depth: 18, 34 or 50.
        in_channels: input bands.
        dilate_last: replace the stride of ``layer4`` by dilation (output stride 16, for DeepLab).
    """

    def __init__(self, depth: ResNetDepth, in_channels: int = 3, *, dilate_last: bool = False):
        super().__init__()
        if depth not in LAYOUTS:
            raise ValueError(f"resnet depth {depth}: choose one of {sorted(LAYOUTS)}")
        block, counts = LAYOUTS[depth]
        self.depth = depth
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self._cin = 64
        self.layer1 = self._layer(block, 64, counts[0], 1)
        self.layer2 = self._layer(block, 128, counts[1], 2)
        self.layer3 = self._layer(block, 256, counts[2], 2)
        self.layer4 = self._layer(
            block, 512, counts[3], 1 if dilate_last else 2, 2 if dilate_last else 1
        )
        self.channels = (
            64,
            64 * block.expansion,
            128 * block.expansion,
            256 * block.expansion,
            512 * block.expansion,
        )

    def _layer(
        self, block: Any, planes: int, count: int, stride: int, dilation: int = 1
    ) -> nn.Sequential:
        layers = [block(self._cin, planes, stride, 1)]
        self._cin = planes * block.expansion
        layers += [block(self._cin, planes, 1, dilation) for _ in range(count - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Features at strides 2, 4, 8, 16, 32 (16 for the last with ``dilate_last``)."""
        c1 = self.relu(self.bn1(self.conv1(x)))
        c2 = self.layer1(self.maxpool(c1))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [c1, c2, c3, c4, self.layer4(c4)]


def adapt_first_conv(weight: Tensor, bands: int) -> Tensor:
    """(64, 3, k, k) RGB filters -> (64, bands, k, k): cycle R, G, B (fewer bands: their mean)
    and rescale by 3/bands so a flat input gives the same response."""
    if weight.shape[1] == bands:
        return weight
    if bands < 3:
        spread = weight.mean(dim=1, keepdim=True).repeat(1, bands, 1, 1)
    else:
        spread = weight[:, [b % 3 for b in range(bands)]]
    return spread * (3.0 / bands)


def load_encoder_weights(encoder: ResNet, path: str | os.PathLike[str]) -> None:
    """Load a torchvision ``resnet{18,34,50}`` state dict (``fc`` ignored) into ``encoder``."""
    where = Path(path)
    if not where.is_file():
        raise InputError(f"{where}: encoder weights not found (a torchvision resnet .pth file)")
    try:
        state = torch.load(where, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(
            f"{where}: not a readable PyTorch state dict ({type(exc).__name__})"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise InputError(f"{where}: not a torchvision ResNet state dict (no conv1.weight)")
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    first = state["conv1.weight"]
    if first.shape[1] not in (3, encoder.in_channels):
        raise InputError(
            f"{where}: encoder weights take {first.shape[1]} bands but the store has "
            f"{encoder.in_channels}; use RGB (3-band) ImageNet weights or weights for "
            f"{encoder.in_channels} bands"
        )
    state["conv1.weight"] = adapt_first_conv(first, encoder.in_channels)
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        detail = (missing or unexpected or wrong)[:3]
        raise InputError(
            f"{where}: does not fit a resnet{encoder.depth} encoder ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped keys, e.g. {detail}); "
            f"pass torchvision resnet{encoder.depth} weights"
        )
    encoder.load_state_dict(state, strict=True)
