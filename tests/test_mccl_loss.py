"""`mccl_loss` against values computed by hand from the formulas of the method note."""

from __future__ import annotations

import math

import pytest
import torch

from synseg.losses import bounded_similarity, mccl_loss


def cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def c(x: float, lo: float = 0.005, hi: float = 0.995) -> float:
    return min(max(x, lo), hi)


# Image 0: two valid categories (slot 2 padding); image 1: one valid category; image 2: none.
FG = [[[1, 0], [0.6, 0.8], [9, 9]], [[0.8, 0.6], [5, 5], [5, 5]], [[1, 1], [1, 1], [1, 1]]]
BG = [[[0, 1], [0.6, -0.8], [9, 9]], [[-0.8, 0.6], [5, 5], [5, 5]], [[1, 1], [1, 1], [1, 1]]]
TX = [[[1, 0.2], [0.5, 1], [1, 0]], [[1, 0], [1, 0], [1, 0]], [[1, 0], [1, 0], [1, 0]]]
VALID = [[True, True, False], [True, False, False], [False, False, False]]


def by_hand() -> dict[str, float]:
    f, b, t = FG, BG, TX
    a0 = -(math.log(c(cos(f[0][0], t[0][0]))) + math.log(c(cos(f[0][1], t[0][1])))) / 2
    a1 = -math.log(c(cos(f[1][0], t[1][0])))
    k0 = -(math.log(1 - c(cos(f[0][0], b[0][0]))) + math.log(1 - c(cos(f[0][1], b[0][1])))) / 2
    k1 = -math.log(1 - c(cos(f[1][0], b[1][0])))
    back0 = -math.log(c(cos(b[0][0], b[0][1])))  # both ordered pairs are equal
    sep0 = -math.log(1 - c(cos(f[0][0], f[0][1])))
    return {"align": (a0 + a1) / 2, "cont": (k0 + k1) / 2, "back": back0, "sep": sep0}


def tensors():
    return (
        torch.tensor(FG, dtype=torch.float64),
        torch.tensor(BG, dtype=torch.float64),
        torch.tensor(TX, dtype=torch.float64),
        torch.tensor(VALID),
    )


def test_terms_equal_hand_computed_values() -> None:
    out = mccl_loss(*tensors())
    ref = by_hand()
    for term, value in ref.items():
        assert float(out[term]) == pytest.approx(value, rel=1e-9), term
    assert float(out["total"]) == pytest.approx(sum(ref.values()), rel=1e-9)


def test_weights_switch_terms_off() -> None:
    out = mccl_loss(*tensors(), weights=(1.0, 0.0, 2.0, 0.0))
    ref = by_hand()
    assert float(out["total"]) == pytest.approx(ref["align"] + 2 * ref["back"], rel=1e-9)


def test_hard_clamp_has_zero_gradient_at_the_bound_and_soft_does_not() -> None:
    a = torch.tensor([[1.0, 0.0]], requires_grad=True)
    b = torch.tensor([[1.0, 0.001]])
    bounded_similarity(a, b, (0.005, 0.995)).sum().backward()
    assert torch.all(a.grad == 0)  # cos ~ 1 > 0.995: clamped
    a.grad = None
    s = bounded_similarity(a, torch.tensor([[0.0, 1.0]]), (0.005, 0.995), soft=True)
    assert float(s) == pytest.approx(0.005 + 0.99 * 0.5)
    s.sum().backward()
    assert a.grad.abs().sum() > 0


def test_no_valid_category_gives_zero_terms_with_a_graph() -> None:
    fg = torch.randn(2, 3, 4, requires_grad=True)
    out = mccl_loss(fg, torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.zeros(2, 3, dtype=torch.bool))
    assert all(float(out[t]) == 0.0 for t in ("align", "cont", "back", "sep", "total"))
    out["total"].backward()  # a batch with no category still runs


def test_single_category_images_do_not_count_for_pair_terms() -> None:
    fg, bg, tx, _ = tensors()
    only_single = torch.tensor([[True, False, False], [True, False, False], [False, False, False]])
    out = mccl_loss(fg, bg, tx, only_single)
    assert float(out["back"]) == 0.0 and float(out["sep"]) == 0.0 and float(out["align"]) > 0


def test_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="must all be"):
        mccl_loss(
            torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 2, 4), torch.ones(2, 3, dtype=bool)
        )
