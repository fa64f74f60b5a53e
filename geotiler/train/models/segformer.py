"""SegFormer: a Mix Transformer (MiT) encoder and the all-MLP decoder (Xie et al., 2021).

The encoder has four stages. Each starts with an overlapping patch embedding (a strided
convolution whose kernel is larger than its stride, then layer norm) and stacks transformer layers
of efficient self-attention (keys and values come from a sequence shrunk by a strided convolution
of ratio ``sr``) and a Mix-FFN (linear, 3x3 depthwise convolution, GELU, linear). The decoder
projects the four feature maps to one width with linear layers, upsamples them to stride 4, fuses
them with a 1x1 convolution and classifies; the logits are resized to the input, so any tile size
works (at least 32 px).

Parameter names are those of Hugging Face transformers' ``SegformerForSemanticSegmentation``
(``segformer.encoder.patch_embeddings.0.proj.weight``,
``segformer.encoder.block.0.0.attention.self.query.weight``, ``decode_head.linear_c.0.proj.weight``
...), so a local ``model.safetensors`` of ``nvidia/mit-b0`` (encoder) or of a fine-tuned SegFormer
(encoder and decoder) loads by name: see :mod:`geotiler.train.models.weights`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The MiT-b0/b1/b2 shapes of the SegFormer paper (and of the nvidia/mit-b* configs).
MIT_CONFIGS: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": (32, 64, 160, 256), "depths": (2, 2, 2, 2), "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": (64, 128, 320, 512), "depths": (2, 2, 2, 2), "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": (64, 128, 320, 512), "depths": (3, 4, 6, 3), "decoder_hidden_size": 768},
}


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's residual branch with probability ``p`` while training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        return x * torch.bernoulli(torch.full(shape, keep, dtype=x.dtype, device=x.device)) / keep


class OverlapPatchEmbeddings(nn.Module):
    """A strided convolution with overlapping windows, flattened to tokens and layer-normed."""

    def __init__(self, patch_size: int, stride: int, in_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, patch_size, stride, patch_size // 2)
        self.layer_norm = nn.LayerNorm(hidden_size)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(x)
        rows, cols = x.shape[2], x.shape[3]
        return self.layer_norm(x.flatten(2).transpose(1, 2)), rows, cols


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys and values come from a sequence reduced ``sr`` times."""

    def __init__(self, hidden_size: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"hidden size {hidden_size} is not a multiple of {heads} heads")
        self.heads = heads
        self.sr_ratio = sr_ratio
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        # Identity (no parameters) where there is no reduction, as in the reference.
        self.sr = nn.Conv2d(hidden_size, hidden_size, sr_ratio, sr_ratio) if sr_ratio > 1 else None
        self.layer_norm = nn.LayerNorm(hidden_size) if sr_ratio > 1 else None

    def _split(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, rows: int, cols: int) -> Tensor:
        batch, length, width = x.shape
        query = self._split(self.query(x))
        context = x
        if self.sr is not None and self.layer_norm is not None:
            grid = x.transpose(1, 2).reshape(batch, width, rows, cols)
            context = self.layer_norm(self.sr(grid).flatten(2).transpose(1, 2))
        key = self._split(self.key(context))
        value = self._split(self.value(context))
        out = F.scaled_dot_product_attention(query, key, value)
        return out.transpose(1, 2).reshape(batch, length, width)


class SelfOutput(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(x)


class Attention(nn.Module):
    def __init__(self, hidden_size: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.self = EfficientSelfAttention(hidden_size, heads, sr_ratio)
        self.output = SelfOutput(hidden_size)

    def forward(self, x: Tensor, rows: int, cols: int) -> Tensor:
        return self.output(self.self(x, rows, cols))


class DWConv(nn.Module):
    """The 3x3 depthwise convolution of Mix-FFN, on tokens laid back onto their grid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels)

    def forward(self, x: Tensor, rows: int, cols: int) -> Tensor:
        batch, _, width = x.shape
        grid = x.transpose(1, 2).reshape(batch, width, rows, cols)
        return self.dwconv(grid).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    def __init__(self, hidden_size: int, inner_size: int) -> None:
        super().__init__()
        self.dense1 = nn.Linear(hidden_size, inner_size)
        self.dwconv = DWConv(inner_size)
        self.act = nn.GELU()
        self.dense2 = nn.Linear(inner_size, hidden_size)

    def forward(self, x: Tensor, rows: int, cols: int) -> Tensor:
        return self.dense2(self.act(self.dwconv(self.dense1(x), rows, cols)))


class Layer(nn.Module):
    """Pre-norm transformer layer: attention and Mix-FFN, each a residual branch."""

    def __init__(
        self, hidden_size: int, heads: int, sr_ratio: int, mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        self.layer_norm_1 = nn.LayerNorm(hidden_size)
        self.attention = Attention(hidden_size, heads, sr_ratio)
        self.drop_path = DropPath(drop_path)
        self.layer_norm_2 = nn.LayerNorm(hidden_size)
        self.mlp = MixFFN(hidden_size, int(hidden_size * mlp_ratio))

    def forward(self, x: Tensor, rows: int, cols: int) -> Tensor:
        x = x + self.drop_path(self.attention(self.layer_norm_1(x), rows, cols))
        return x + self.drop_path(self.mlp(self.layer_norm_2(x), rows, cols))


class MixTransformer(nn.Module):
    """The MiT encoder; :meth:`forward` returns the four stage outputs (N, C_i, H/s_i, W/s_i)."""

    def __init__(
        self,
        in_channels: int,
        *,
        hidden_sizes: Sequence[int],
        depths: Sequence[int],
        num_attention_heads: Sequence[int] = (1, 2, 5, 8),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        patch_sizes: Sequence[int] = (7, 3, 3, 3),
        strides: Sequence[int] = (4, 2, 2, 2),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        stages = len(hidden_sizes)
        lists = (depths, num_attention_heads, sr_ratios, patch_sizes, strides, mlp_ratios)
        if any(len(values) != stages for values in lists):
            raise ValueError(f"segformer: every per-stage list needs {stages} entries")
        self.in_channels = in_channels
        self.hidden_sizes = tuple(hidden_sizes)
        # Plain floats (as torch.linspace would give): the model also builds on the meta device.
        count = sum(depths)
        rates = [drop_path_rate * i / max(count - 1, 1) for i in range(count)]
        self.patch_embeddings = nn.ModuleList(
            OverlapPatchEmbeddings(
                patch_sizes[i], strides[i], in_channels if i == 0 else hidden_sizes[i - 1], size
            )
            for i, size in enumerate(hidden_sizes)
        )
        blocks = []
        for i, size in enumerate(hidden_sizes):
            first = sum(depths[:i])
            blocks.append(
                nn.ModuleList(
                    Layer(size, num_attention_heads[i], sr_ratios[i], mlp_ratios[i], rates[j])
                    for j in range(first, first + depths[i])
                )
            )
        self.block = nn.ModuleList(blocks)
        self.layer_norm = nn.ModuleList(nn.LayerNorm(size) for size in hidden_sizes)

    def forward(self, x: Tensor) -> list[Tensor]:
        features: list[Tensor] = []
        stages = zip(self.patch_embeddings, self.block, self.layer_norm)  # noqa: B905 (TorchScript)
        for embed, layers, norm in stages:
            tokens, rows, cols = embed(x)
            for layer in layers:  # type: ignore[attr-defined]
                tokens = layer(tokens, rows, cols)
            tokens = norm(tokens)
            x = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], rows, cols)
            features.append(x)
        return features


class _SegformerModel(nn.Module):
    """Holds the encoder under ``segformer.encoder`` as the reference does."""

    def __init__(self, encoder: MixTransformer) -> None:
        super().__init__()
        self.encoder = encoder


class MLP(nn.Module):
    """A linear projection of every pixel of a feature map (the decoder's ``linear_c``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        batch, _, rows, cols = x.shape
        out = self.proj(x.flatten(2).transpose(1, 2))
        return out.transpose(1, 2).reshape(batch, -1, rows, cols)


class DecodeHead(nn.Module):
    """All-MLP decoder: project each stage, upsample to stride 4, fuse, classify."""

    def __init__(
        self, hidden_sizes: Sequence[int], width: int, num_classes: int, dropout: float
    ) -> None:
        super().__init__()
        self.linear_c = nn.ModuleList(MLP(size, width) for size in hidden_sizes)
        self.linear_fuse = nn.Conv2d(width * len(hidden_sizes), width, 1, bias=False)
        self.batch_norm = nn.BatchNorm2d(width)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        size = [features[0].shape[2], features[0].shape[3]]
        projected: list[Tensor] = []
        for i, mlp in enumerate(self.linear_c):
            projected.append(
                F.interpolate(mlp(features[i]), size=size, mode="bilinear", align_corners=False)
            )
        projected.reverse()  # deepest first: the order the fuse weights were trained in
        fused = self.activation(self.batch_norm(self.linear_fuse(torch.cat(projected, dim=1))))
        return self.classifier(self.dropout(fused))


class SegFormer(nn.Module):
    """SegFormer for ``in_channels`` bands and ``num_classes`` classes.

    Args:
        in_channels: input bands.
        num_classes: output channels (logits).
        hidden_sizes, depths, num_attention_heads, sr_ratios, patch_sizes, strides, mlp_ratios:
            the MiT encoder's per-stage shape (see :data:`MIT_CONFIGS`).
        decoder_hidden_size: width of the all-MLP decoder.
        drop_path_rate: stochastic depth of the last layer (rising linearly from 0).
        classifier_dropout: dropout before the classifier.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        hidden_sizes: Sequence[int] = MIT_CONFIGS["b0"]["hidden_sizes"],
        depths: Sequence[int] = MIT_CONFIGS["b0"]["depths"],
        num_attention_heads: Sequence[int] = (1, 2, 5, 8),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        patch_sizes: Sequence[int] = (7, 3, 3, 3),
        strides: Sequence[int] = (4, 2, 2, 2),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        decoder_hidden_size: int = 256,
        drop_path_rate: float = 0.1,
        classifier_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        encoder = MixTransformer(
            in_channels,
            hidden_sizes=hidden_sizes,
            depths=depths,
            num_attention_heads=num_attention_heads,
            sr_ratios=sr_ratios,
            patch_sizes=patch_sizes,
            strides=strides,
            mlp_ratios=mlp_ratios,
            drop_path_rate=drop_path_rate,
        )
        self.segformer = _SegformerModel(encoder)
        self.decode_head = DecodeHead(
            hidden_sizes, decoder_hidden_size, num_classes, classifier_dropout
        )
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.decode_head(self.segformer.encoder(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _init_weights(module: nn.Module) -> None:
    """Truncated-normal linear layers and fan-out convolutions, as the SegFormer authors do."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / (fan_out // module.groups)))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
