"""Feature Synergy Structure against a hand computation:
f = V^T A / sum(A), fbar = V^T (1 - A) / sum(1 - A)."""

from __future__ import annotations

import torch

from synseg.models.feature_synergy import feature_synergy


def test_foreground_and_background_features_by_hand() -> None:
    # One pair, N = 3 patches, D = 2. A = (1, 0.5, 0): the map covers patch 0 fully, patch 1 half.
    values = torch.tensor([[[2.0, 0.0], [0.0, 4.0], [6.0, 6.0]]])  # (P=1, N=3, D=2)
    act = torch.tensor([[1.0, 0.5, 0.0]])
    fg, bg = feature_synergy(values, act, eps=0.0)
    # f = (1 * [2, 0] + 0.5 * [0, 4] + 0 * [6, 6]) / 1.5 = [2, 2] / 1.5
    torch.testing.assert_close(fg, torch.tensor([[2.0 / 1.5, 2.0 / 1.5]]))
    # fbar = (0 * [2, 0] + 0.5 * [0, 4] + 1 * [6, 6]) / 1.5 = [6, 8] / 1.5
    torch.testing.assert_close(bg, torch.tensor([[6.0 / 1.5, 8.0 / 1.5]]))


def test_pairs_are_independent_and_a_uniform_map_gives_the_mean() -> None:
    g = torch.Generator().manual_seed(0)
    values = torch.randn(3, 5, 4, generator=g)
    act = torch.rand(3, 5, generator=g)
    fg, bg = feature_synergy(values, act)
    for p in range(3):  # pair p alone gives the same features
        fg1, bg1 = feature_synergy(values[p : p + 1], act[p : p + 1])
        torch.testing.assert_close(fg1[0], fg[p])
        torch.testing.assert_close(bg1[0], bg[p])
    half = torch.full((3, 5), 0.5)
    fg_u, bg_u = feature_synergy(values, half, eps=0.0)
    torch.testing.assert_close(fg_u, values.mean(1))  # A = 1 - A: both are the plain mean
    torch.testing.assert_close(bg_u, values.mean(1))
