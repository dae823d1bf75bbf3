"""PAMR: pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), as TCL applies it at test time.

Affinities between a pixel and its 8 neighbours at each dilation come from the image: -|x_i - x_j| divided
by 0.1 x the local standard deviation (over the 3x3 neighbourhoods of all dilations, centre included),
averaged over channels, softmax over the neighbours. Each iteration replaces a mask value by the
affinity-weighted mean of its neighbours' values. Borders are replicate-padded (as the reference).

Vectorised over pixels, channels and classes; the loop runs over the 8 x len(dilations) neighbour offsets
only, so memory stays O(B x C x H x W) even for 150 classes at 448 px (the reference builds a
(B, C, 8 x D, H, W) tensor)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# Neighbour order of the reference implementation (row-major 3x3 without the centre).
NEIGHBOURS: tuple[tuple[int, int], ...] = (
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -1),
    (0, 1),
    (1, -1),
    (1, 0),
    (1, 1),
)


def _shifted(padded: Tensor, pad: int, dy: int, dx: int, h: int, w: int) -> Tensor:
    """The (.., H, W) view of a replicate-padded tensor at offset (dy, dx) from each pixel."""
    return padded[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def _offsets(dilations: Sequence[int]) -> list[tuple[int, int]]:
    return [(d * dy, d * dx) for d in dilations for dy, dx in NEIGHBOURS]


def pamr_affinity(image: Tensor, dilations: Sequence[int] = (1,)) -> Tensor:
    """(B, K, H, W) image -> (B, P, H, W) neighbour weights (softmax over P = 8 x len(dilations))."""
    if not dilations or min(dilations) < 1:
        raise ValueError(f"PAMR dilations {list(dilations)}: expected positive integers")
    b, k, h, w = image.shape
    pad = max(dilations)
    x = F.pad(image.float(), [pad] * 4, mode="replicate")
    # Local std over the 3x3 neighbourhoods of every dilation (centre counted once per dilation), unbiased.
    centre = image.float()
    samples = [centre] * len(dilations) + [_shifted(x, pad, dy, dx, h, w) for dy, dx in _offsets(dilations)]
    n = len(samples)
    mean = sum(samples) / n
    var = sum((s - mean) ** 2 for s in samples) / (n - 1)
    std = var.sqrt()  # (B, K, H, W)
    scale = 1e-8 + 0.1 * std
    logits = torch.stack(
        [
            (-(centre - _shifted(x, pad, dy, dx, h, w)).abs() / scale).mean(1)
            for dy, dx in _offsets(dilations)
        ],
        1,
    )  # (B, P, H, W)
    return logits.softmax(1)


def pamr(image: Tensor, masks: Tensor, iterations: int = 10, dilations: Sequence[int] = (1,)) -> Tensor:
    """Refines (B, C, h, w) masks with (B, K, H, W) image affinities; masks are first resized bilinearly
    (align_corners=True, as the reference) to the image size. Returns (B, C, H, W)."""
    if iterations < 0:
        raise ValueError(f"PAMR iterations {iterations}: expected >= 0")
    if image.shape[0] != masks.shape[0]:
        raise ValueError(f"PAMR: image batch {image.shape[0]} != mask batch {masks.shape[0]}")
    h, w = image.shape[-2:]
    out_dtype = masks.dtype
    masks = masks.float()
    if masks.shape[-2:] != (h, w):
        masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=True)
    aff = pamr_affinity(image, dilations)  # (B, P, H, W)
    weights = [aff[:, p : p + 1].contiguous() for p in range(aff.shape[1])]  # P x (B, 1, H, W)
    offsets = _offsets(dilations)
    pad = max(dilations)
    for _ in range(iterations):
        padded = F.pad(masks, [pad] * 4, mode="replicate")
        new = torch.zeros_like(masks)
        for weight, (dy, dx) in zip(weights, offsets, strict=True):
            new.addcmul_(_shifted(padded, pad, dy, dx, h, w), weight)  # in place: no (B, C, H, W) temporary
        masks = new
    return masks.to(out_dtype)
