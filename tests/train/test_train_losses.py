"""Each loss against values computed by hand on a 3-pixel image (the last pixel is nodata)."""

from __future__ import annotations

import math

import pytest
import torch

from geotiler.errors import InputError
from geotiler.train.losses import LossContext, build_loss

# One image, 3 classes (0 = nodata), 1 x 3 pixels; truth 1, 2, nodata.
LOGITS = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [5.0, -3.0, 9.0]]).T.reshape(1, 3, 1, 3)
TARGET = torch.tensor([[[1, 2, 0]]])
CTX = LossContext(num_classes=3, nodata=0)
E = math.e
P0 = [1 / (2 + E**2), E**2 / (2 + E**2), 1 / (2 + E**2)]  # softmax of pixel 0
P1 = [1 / (2 + E), 1 / (2 + E), E / (2 + E)]  # softmax of pixel 1
CE0, CE1 = -math.log(P0[1]), -math.log(P1[2])


def _value(spec: str, ctx: LossContext = CTX, logits: torch.Tensor = LOGITS) -> float:
    return float(build_loss(spec, ctx)(logits, TARGET))


def _dice() -> float:
    d1 = (2 * P0[1] + 1) / (P0[1] + P1[1] + 1 + 1)
    d2 = (2 * P1[2] + 1) / (P0[2] + P1[2] + 1 + 1)
    return 1 - (d1 + d2) / 2


def test_cross_entropy() -> None:
    assert _value("ce") == pytest.approx((CE0 + CE1) / 2, rel=1e-6)


def test_weighted_cross_entropy() -> None:
    ctx = LossContext(3, 0, class_weights=(0.0, 1.0, 3.0))
    assert _value("ce", ctx) == pytest.approx((CE0 + 3 * CE1) / 4, rel=1e-6)


@pytest.mark.parametrize("gamma", [None, 0.5])
def test_focal(gamma: float | None) -> None:
    g = 2.0 if gamma is None else gamma
    expected = ((1 - P0[1]) ** g * CE0 + (1 - P1[2]) ** g * CE1) / 2
    spec = "focal" if gamma is None else f"focal:{gamma}"
    assert _value(spec) == pytest.approx(expected, rel=1e-6)


def test_dice() -> None:
    assert _value("dice") == pytest.approx(_dice(), rel=1e-6)


def test_jaccard() -> None:
    j1 = (P0[1] + 1) / (P0[1] + P1[1] + 1 - P0[1] + 1)
    j2 = (P1[2] + 1) / (P0[2] + P1[2] + 1 - P1[2] + 1)
    assert _value("jaccard") == pytest.approx(1 - (j1 + j2) / 2, rel=1e-6)


def test_sums_add_their_terms() -> None:
    assert _value("ce+dice") == pytest.approx((CE0 + CE1) / 2 + _dice(), rel=1e-6)


@pytest.mark.parametrize("spec", ["ce", "dice", "focal", "jaccard"])
def test_nodata_pixels_neither_count_nor_get_gradient(spec: str) -> None:
    logits = LOGITS.clone().requires_grad_(True)
    other = LOGITS.clone()
    other[..., 2] = torch.tensor([-4.0, 7.0, 1.0]).reshape(1, 3, 1)
    assert _value(spec, logits=other) == pytest.approx(_value(spec), rel=1e-6)
    build_loss(spec, CTX)(logits, TARGET).backward()
    assert logits.grad is not None
    assert torch.all(logits.grad[..., 2] == 0)


def test_all_nodata_gives_zero_not_nan() -> None:
    target = torch.zeros_like(TARGET)
    assert build_loss("ce+focal", CTX)(LOGITS, target).item() == 0.0


def test_unknown_loss_names_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"unknown term 'lovasz'.*known: ce, dice, focal, jaccard"):
        build_loss("ce+lovasz", CTX)
    with pytest.raises(InputError, match="not a number"):
        build_loss("focal:high", CTX)
