"""Segmentation losses (a registry) that ignore the nodata label everywhere.

A loss is named by a spec: ``ce``, ``dice``, ``jaccard``, ``focal`` or ``focal:GAMMA``, or a sum
of those joined by ``+`` (``ce+dice``). Every loss takes logits (N, K, H, W) and an int64 mask
(N, H, W); pixels whose label is the nodata id contribute nothing. Dice and Jaccard are soft
(computed on softmax probabilities over the whole batch) and averaged over the non-nodata classes
with a smoothing of 1 pixel, so a class absent from both truth and prediction scores about 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geotiler.errors import InputError

SMOOTH = 1.0


@dataclass(frozen=True)
class LossContext:
    """What every loss may need: class count, nodata id and optional per-class weights."""

    num_classes: int
    nodata: int | None = None
    class_weights: tuple[float, ...] | None = None

    def valid(self, target: Tensor) -> Tensor:
        """Boolean (N, H, W): pixels that carry a label."""
        if self.nodata is None:
            return torch.ones_like(target, dtype=torch.bool)
        return target != self.nodata

    def weight_tensor(self, like: Tensor) -> Tensor | None:
        if self.class_weights is None:
            return None
        return torch.tensor(self.class_weights, dtype=torch.float32, device=like.device)


LossFn = Callable[[Tensor, Tensor], Tensor]
LossFactory = Callable[[LossContext, float | None], LossFn]


def _cross_entropy(ctx: LossContext, _arg: float | None) -> LossFn:
    def loss(logits: Tensor, target: Tensor) -> Tensor:
        valid = ctx.valid(target)
        safe = torch.where(valid, target, torch.zeros_like(target))
        weight = ctx.weight_tensor(logits)
        per_pixel = F.cross_entropy(logits.float(), safe, weight=weight, reduction="none")
        scale = valid.float() if weight is None else weight[safe] * valid.float()
        # Mean over labelled pixels (weighted as torch's "mean" does); 0 when none is labelled.
        return (per_pixel * valid.float()).sum() / scale.sum().clamp_min(1e-12)

    return loss


def _focal(ctx: LossContext, gamma: float | None) -> LossFn:
    power = 2.0 if gamma is None else gamma

    def loss(logits: Tensor, target: Tensor) -> Tensor:
        valid = ctx.valid(target)
        safe = torch.where(valid, target, torch.zeros_like(target))
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
        per_pixel = -((1 - log_p.exp()) ** power) * log_p
        weight = ctx.weight_tensor(logits)
        if weight is not None:
            per_pixel = per_pixel * weight[safe]
        count = valid.sum().clamp_min(1)
        return (per_pixel * valid.float()).sum() / count

    return loss


def _overlap_terms(
    ctx: LossContext, logits: Tensor, target: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Per class (K,): soft intersection, sum of probabilities, sum of truth (labelled pixels)."""
    valid = ctx.valid(target).unsqueeze(1).float()
    safe = torch.where(ctx.valid(target), target, torch.zeros_like(target))
    probs = F.softmax(logits.float(), dim=1) * valid
    truth = F.one_hot(safe, ctx.num_classes).permute(0, 3, 1, 2).float() * valid
    dims = (0, 2, 3)
    return (probs * truth).sum(dims), probs.sum(dims), truth.sum(dims)


def _class_mean(ctx: LossContext, scores: Tensor) -> Tensor:
    keep = torch.ones(ctx.num_classes, dtype=torch.bool, device=scores.device)
    if ctx.nodata is not None and ctx.nodata < ctx.num_classes:
        keep[ctx.nodata] = False
    return scores[keep].mean()


def _dice(ctx: LossContext, _arg: float | None) -> LossFn:
    def loss(logits: Tensor, target: Tensor) -> Tensor:
        inter, pred, truth = _overlap_terms(ctx, logits, target)
        dice = (2 * inter + SMOOTH) / (pred + truth + SMOOTH)
        return 1 - _class_mean(ctx, dice)

    return loss


def _jaccard(ctx: LossContext, _arg: float | None) -> LossFn:
    def loss(logits: Tensor, target: Tensor) -> Tensor:
        inter, pred, truth = _overlap_terms(ctx, logits, target)
        iou = (inter + SMOOTH) / (pred + truth - inter + SMOOTH)
        return 1 - _class_mean(ctx, iou)

    return loss


LOSSES: dict[str, LossFactory] = {
    "ce": _cross_entropy,
    "dice": _dice,
    "focal": _focal,
    "jaccard": _jaccard,
}


def parse_loss_spec(spec: str) -> list[tuple[str, float | None]]:
    """``"ce+focal:1.5"`` -> ``[("ce", None), ("focal", 1.5)]``; InputError when unknown."""
    terms: list[tuple[str, float | None]] = []
    for part in spec.replace(" ", "").lower().split("+"):
        name, _, raw = part.partition(":")
        if name not in LOSSES:
            raise InputError(
                f"loss {spec!r}: unknown term {name!r} (known: {', '.join(LOSSES)}; "
                "join terms with '+', e.g. ce+dice)"
            )
        try:
            arg = float(raw) if raw else None
        except ValueError:
            raise InputError(f"loss {spec!r}: {raw!r} is not a number (e.g. focal:2)") from None
        terms.append((name, arg))
    return terms


class SegmentationLoss(nn.Module):
    """The sum of the terms of a loss spec."""

    def __init__(self, spec: str, ctx: LossContext) -> None:
        super().__init__()
        self.spec = spec
        self.terms = [LOSSES[name](ctx, arg) for name, arg in parse_loss_spec(spec)]

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        total = self.terms[0](logits, target)
        for term in self.terms[1:]:
            total = total + term(logits, target)
        return total


def build_loss(spec: str, ctx: LossContext) -> SegmentationLoss:
    """The loss named by ``spec`` (see the module docstring)."""
    return SegmentationLoss(spec, ctx)
