"""U-Net decoder on a ResNet encoder (``unet-resnet18/34/50``).

The decoder upsamples by 2 five times, merging the encoder feature of each stride, so the output
has the input's size. Tiles whose size is not a multiple of 32 (e.g. 300) are zero-padded to the
next multiple and the logits cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geotiler.train.models.resnet import ResNet, ResNetDepth
from geotiler.train.models.unet import conv_block, pad_to_multiple


class UNetResNet(nn.Module):
    """ResNet encoder + U-Net decoder.

    Args:
        in_channels: input bands.
        num_classes: output channels (logits).
        depth: ResNet depth (18, 34 or 50).
        decoder_widths: channels of the five decoder stages, deep to shallow.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        depth: ResNetDepth = 34,
        decoder_widths: Sequence[int] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__()
        self.stride = 32  # an instance attribute, so TorchScript sees it
        if len(decoder_widths) != 5:
            raise ValueError(f"decoder_widths {list(decoder_widths)}: need 5 stages")
        self.encoder = ResNet(depth, in_channels)
        skips = [*self.encoder.channels[-2::-1], 0]  # strides 16, 8, 4, 2, then none
        self.blocks = nn.ModuleList()
        channels = self.encoder.channels[-1]
        for skip, width in zip(skips, decoder_widths, strict=True):
            self.blocks.append(conv_block(channels + skip, width))
            channels = width
        self.head = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        x, (rows, cols) = pad_to_multiple(x, self.stride)
        features = self.encoder(x)
        y = features.pop()
        for block in self.blocks:
            y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            if features:
                y = torch.cat([y, features.pop()], dim=1)
            y = block(y)
        return self.head(y)[..., :rows, :cols]
