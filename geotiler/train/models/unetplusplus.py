"""UNet++ (Zhou et al., 2018): a ResNet encoder and nested, densely connected skip pathways.

Node ``X(d, l)`` of the decoder sits at the resolution of encoder feature ``l + 1`` (counted from
the deepest) and takes the upsampled node ``X(d, l - 1)`` beside every node ``X(d + 1 .. l, l)``
of its level and the encoder feature itself, so the decoder is a grid of small U-Nets whose
outputs are averaged into each other instead of a single long skip. The last node upsamples to
the input's resolution without a skip.

Parameter names follow segmentation-models-pytorch's ``UnetPlusPlus`` (``encoder.*`` as in
torchvision, ``decoder.blocks.x_{d}_{l}.conv1.0.weight``, ``segmentation_head.0.weight``), so a
state dict saved from it loads by name. Tiles whose size is not a multiple of 32 are zero-padded
and the logits cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geotiler.train.models.resnet import ResNet, ResNetDepth
from geotiler.train.models.unet import pad_to_multiple


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class DecoderBlock(nn.Module):
    """A node ``X(d, l)``: upsample by 2, concatenate the skips, two 3x3 convolutions."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(cin + skip, cout)
        self.conv2 = _conv_bn_relu(cout, cout)

    def forward(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if len(skips) > 0:
            x = torch.cat([x] + skips, dim=1)  # noqa: RUF005 (TorchScript)
        return self.conv2(self.conv1(x))


class UnetPlusPlusDecoder(nn.Module):
    """The nested decoder over five encoder features (strides 2..32, shallow to deep)."""

    def __init__(self, encoder_channels: Sequence[int], decoder_channels: Sequence[int]) -> None:
        super().__init__()
        if len(decoder_channels) != len(encoder_channels):
            raise ValueError(
                f"decoder_channels {list(decoder_channels)}: need {len(encoder_channels)} stages"
            )
        deep = list(encoder_channels)[::-1]  # deepest first
        self.depth = len(deep) - 1
        skip = [*deep[1:], 0]
        inputs = [deep[0], *decoder_channels[:-1]]
        blocks: dict[str, DecoderBlock] = {}
        self.plan: list[tuple[int, int]] = []  # (d, l) of each block, in order
        # Insertion order is the order of computation: each node after its inputs.
        for level in range(self.depth):
            for d in range(self.depth - level):
                layer = d + level
                if d == 0:  # the top row, which ends in the output
                    cin, cout = inputs[layer], decoder_channels[layer]
                else:
                    cin, cout = skip[layer - 1], skip[layer]
                count = layer + 1 - d  # nodes d+1..layer of this level, and the encoder feature
                blocks[f"x_{d}_{layer}"] = DecoderBlock(cin, skip[layer] * count, cout)
                self.plan.append((d, layer))
        blocks[f"x_0_{self.depth}"] = DecoderBlock(inputs[-1], 0, decoder_channels[-1])
        self.plan.append((0, self.depth))
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, features: list[Tensor]) -> Tensor:
        deep = features[::-1]
        nodes: dict[str, Tensor] = {}
        out = deep[0]
        for i, block in enumerate(self.blocks.values()):
            d, layer = self.plan[i]
            skips: list[Tensor] = []
            if layer == self.depth:
                x = nodes[f"x_0_{layer - 1}"]
            elif d == layer:
                x = deep[d]
                skips.append(deep[d + 1])
            else:
                x = nodes[f"x_{d}_{layer - 1}"]
                for above in range(d + 1, layer + 1):
                    skips.append(nodes[f"x_{above}_{layer}"])
                skips.append(deep[layer + 1])
            out = block(x, skips)
            nodes[f"x_{d}_{layer}"] = out
        return out


class UNetPlusPlus(nn.Module):
    """ResNet encoder + UNet++ decoder + 3x3 segmentation head.

    Args:
        in_channels: input bands.
        num_classes: output channels (logits).
        depth: ResNet depth (18, 34, 50 or 101).
        decoder_channels: widths of the top decoder row, deep to shallow (five stages).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        depth: ResNetDepth = 34,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__()
        self.stride = 32
        self.encoder = ResNet(depth, in_channels)
        self.decoder = UnetPlusPlusDecoder(self.encoder.channels, decoder_channels)
        self.segmentation_head = nn.Sequential(
            nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        x, (rows, cols) = pad_to_multiple(x, self.stride)
        logits = self.segmentation_head(self.decoder(self.encoder(x)))
        return logits[..., :rows, :cols]
