"""DeepLabV3 and DeepLabV3+ on a dilated ResNet encoder (output stride 16) with an ASPP head.

DeepLabV3 classifies the ASPP features directly (no decoder); DeepLabV3+ fuses them with the
stride-4 features first. The logits are bilinearly resized to the input, so any tile size works.
The encoder's names are torchvision's, so ImageNet or torchgeo ResNet weights load into it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geotiler.train.models.resnet import ResNet, ResNetDepth


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and an image-level branch."""

    def __init__(self, cin: int, cout: int = 256, rates: Sequence[int] = (6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn_relu(cin, cout)] + [_conv_bn_relu(cin, cout, 3, rate) for rate in rates]
        )
        # No batch norm on the pooled branch: it is 1x1 and a batch of one would break BN.
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU())
        self.project = _conv_bn_relu(cout * (len(rates) + 2), cout)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.interpolate(self.pool(x), size=x.shape[-2:], mode="nearest")
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+: ASPP on the stride-16 features, fused with the stride-4 features."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        depth: ResNetDepth = 50,
        aspp_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
    ) -> None:
        super().__init__()
        self.encoder = ResNet(depth, in_channels, dilate_last=True)
        self.aspp = ASPP(self.encoder.channels[-1], aspp_channels, rates)
        self.low = _conv_bn_relu(self.encoder.channels[1], 48)
        self.fuse = nn.Sequential(
            _conv_bn_relu(aspp_channels + 48, 256, 3), _conv_bn_relu(256, 256, 3)
        )
        self.head = nn.Conv2d(256, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        features = self.encoder(x)
        low = self.low(features[1])
        high = F.interpolate(
            self.aspp(features[-1]), size=low.shape[-2:], mode="bilinear", align_corners=False
        )
        logits = self.head(self.fuse(torch.cat([high, low], dim=1)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class DeepLabV3(nn.Module):
    """DeepLabV3: ASPP on the stride-16 features, a 3x3 convolution and the 1x1 classifier."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        depth: ResNetDepth = 50,
        aspp_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
    ) -> None:
        super().__init__()
        self.encoder = ResNet(depth, in_channels, dilate_last=True)
        self.aspp = ASPP(self.encoder.channels[-1], aspp_channels, rates)
        self.fuse = _conv_bn_relu(aspp_channels, aspp_channels, 3)
        self.head = nn.Conv2d(aspp_channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.head(self.fuse(self.aspp(self.encoder(x)[-1])))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
