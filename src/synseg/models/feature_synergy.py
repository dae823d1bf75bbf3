"""Feature Synergy Structure (FSS): one activation map -> a foreground and a background feature."""

from __future__ import annotations

import torch


def feature_synergy(
    values: torch.Tensor, activation: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """values V: (P, N, D) per-patch features; activation A: (P, N) in [0, 1] -> f, fbar: (P, D).

    f = V^T a with a = A / sum(A);  fbar = V^T abar with abar = (1 - A) / sum(1 - A)  (our normalisation)."""
    a = activation / (activation.sum(-1, keepdim=True) + eps)  # (P, N)
    abar = (1 - activation) / ((1 - activation).sum(-1, keepdim=True) + eps)
    fg = torch.einsum("pn,pnd->pd", a, values)
    bg = torch.einsum("pn,pnd->pd", abar, values)
    return fg, bg
