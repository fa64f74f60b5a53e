"""A plain U-Net with configurable depth and widths (16..256 small net up to the classic 64..1024).

Any tile size works: the input is zero-padded up to a multiple of the network's stride (the
normalised input has mean 0, so zeros are neutral) and the output cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Zero-pad the bottom and right of (N, C, H, W) to multiples of ``multiple``."""
    rows, cols = x.shape[-2:]
    pad_rows = (-rows) % multiple
    pad_cols = (-cols) % multiple
    if pad_rows or pad_cols:
        x = F.pad(x, (0, pad_cols, 0, pad_rows))
    return x, (rows, cols)


class UNet(nn.Module):
    """U-Net: ``len(widths)`` levels, 2x2 max-pool down, transposed-convolution up.

    Args:
        in_channels: input bands.
        num_classes: output channels (logits).
        widths: channels per level, shallow to deep; its length is the depth.
        dropout: dropout before the 1x1 head.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        widths: Sequence[int] = (16, 32, 64, 128, 256),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"unet widths {list(widths)}: need at least 2 levels")
        self.stride = 2 ** (len(widths) - 1)
        self.down = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.down.append(conv_block(channels, width))
            channels = width
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for shallow, deep in zip(reversed(widths[:-1]), reversed(widths[1:]), strict=True):
            self.up.append(nn.ConvTranspose2d(deep, shallow, 2, stride=2))
            self.merge.append(conv_block(2 * shallow, shallow))
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        x, (rows, cols) = pad_to_multiple(x, self.stride)
        skips = []
        for level, block in enumerate(self.down):
            if level:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(self.dropout(x))[..., :rows, :cols]
