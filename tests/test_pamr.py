"""PAMR against a per-pixel loop reference of Araslanov & Roth's definition, and hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from synseg.evaluation.pamr import NEIGHBOURS, pamr, pamr_affinity


def loop_pamr(
    image: torch.Tensor, masks: torch.Tensor, iterations: int, dilations: list[int]
) -> torch.Tensor:
    """One pixel at a time: replicate borders (clamped indices), local std over the 3x3 neighbourhoods of
    every dilation (centre included once per dilation, unbiased), softmax over the 8 x D neighbours of the
    channel-mean of -|x_i - x_j| / (1e-8 + 0.1 std), then `iterations` weighted neighbour averages."""
    _, k, h, w = image.shape
    offsets = [(d * dy, d * dx) for d in dilations for dy, dx in NEIGHBOURS]
    at = lambda t, y, x: t[..., min(max(y, 0), h - 1), min(max(x, 0), w - 1)]  # noqa: E731
    aff = torch.zeros(1, len(offsets), h, w, dtype=torch.float64)
    for y in range(h):
        for x in range(w):
            logits = torch.zeros(len(offsets), dtype=torch.float64)
            for c in range(k):
                vals = [float(image[0, c, y, x])] * len(dilations)
                vals += [float(at(image[0, c], y + dy, x + dx)) for dy, dx in offsets]
                mean = sum(vals) / len(vals)
                std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
                for p, (dy, dx) in enumerate(offsets):
                    diff = abs(float(image[0, c, y, x]) - float(at(image[0, c], y + dy, x + dx)))
                    logits[p] += -diff / (1e-8 + 0.1 * std) / k
            aff[0, :, y, x] = logits.softmax(0)
    m = masks.double()
    for _ in range(iterations):
        new = torch.zeros_like(m)
        for y in range(h):
            for x in range(w):
                for p, (dy, dx) in enumerate(offsets):
                    new[0, :, y, x] += at(m[0], y + dy, x + dx) * aff[0, p, y, x]
        m = new
    return m


def test_matches_the_loop_reference_on_a_tiny_image() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 5, 6, generator=g)
    masks = torch.rand(1, 2, 5, 6, generator=g)
    out = pamr(image, masks, iterations=3, dilations=[1, 2])
    ref = loop_pamr(image, masks, 3, [1, 2])
    assert out.shape == (1, 2, 5, 6)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_hand_computed_uniform_image_averages_the_8_neighbours() -> None:
    """A constant image gives equal affinities (1/8), so one iteration is the mean of the 8 neighbours."""
    image = torch.full((1, 3, 3, 3), 0.5)
    masks = torch.zeros(1, 1, 3, 3)
    masks[0, 0, 1, 1] = 8.0  # a single peak in the centre
    aff = pamr_affinity(image, [1])
    torch.testing.assert_close(aff, torch.full((1, 8, 3, 3), 1 / 8))
    out = pamr(image, masks, iterations=1, dilations=[1])
    # The centre is not its own neighbour: 0; each border pixel has the centre among its 8 neighbours once.
    expected = torch.ones(1, 1, 3, 3)
    expected[0, 0, 1, 1] = 0.0
    torch.testing.assert_close(out, expected)


def test_an_edge_keeps_masks_apart_and_constant_masks_stay_constant() -> None:
    image = torch.zeros(1, 1, 8, 8)
    image[..., 4:] = 1.0  # a vertical edge
    masks = torch.zeros(1, 2, 8, 8)
    masks[0, 0, :, :4] = 1.0
    masks[0, 1, :, 4:] = 1.0
    out = pamr(image, masks, iterations=10, dilations=[1, 2])
    assert out[0, 0, :, :4].min() > 0.99 and out[0, 0, :, 4:].max() < 0.01  # no bleeding across the edge
    flat = pamr(torch.rand(1, 3, 8, 8), torch.full((1, 4, 8, 8), 0.3), iterations=5, dilations=[1, 2, 4])
    torch.testing.assert_close(flat, torch.full_like(flat, 0.3))


def test_masks_are_resized_to_the_image_and_bad_arguments_fail() -> None:
    out = pamr(torch.rand(2, 3, 16, 16), torch.rand(2, 5, 4, 4), iterations=2, dilations=[1, 2])
    assert out.shape == (2, 5, 16, 16)
    with pytest.raises(ValueError, match="dilations"):
        pamr_affinity(torch.rand(1, 3, 4, 4), [0])
    with pytest.raises(ValueError, match="batch"):
        pamr(torch.rand(1, 3, 4, 4), torch.rand(2, 1, 4, 4))
