"""Sliding-window score maps and short-side resizing (the GroupViT/TCL protocol: short side 448, window 448,
stride 224, overlapping scores averaged)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one axis of length `size` >= `window`; the last window ends at the border."""
    if not 1 <= stride <= window:
        raise ValueError(f"stride {stride}: expected 1..{window} (the window), so windows leave no gaps")
    n = max(size - window + stride - 1, 0) // stride + 1  # mmseg's grid count
    return [min(i * stride, size - window) for i in range(n)]


def slide_inference(score_fn: Callable[[Tensor], Tensor], images: Tensor, window: int, stride: int) -> Tensor:
    """(B, 3, H, W) -> (B, C, H, W) scores, averaging overlapping windows.

    All windows of all images go through `score_fn` in one call ((N, 3, window, window) -> (N, C, window,
    window)). Images smaller than the window are zero-padded bottom / right and the pad is cropped away, so an
    image that fits one window gets exactly `score_fn` of the padded image."""
    b, _, h, w = images.shape
    pad_h, pad_w = max(window - h, 0), max(window - w, 0)
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    boxes = [(y, x) for y in window_starts(hp, window, stride) for x in window_starts(wp, window, stride)]
    # (B, K, 3, win, win): K windows per image
    crops = torch.stack([images[:, :, y : y + window, x : x + window] for y, x in boxes], 1)
    scores = score_fn(crops.flatten(0, 1))  # (B * K, C, win, win)
    if scores.shape[0] != b * len(boxes) or scores.shape[-2:] != (window, window):
        raise ValueError(
            f"score_fn returned {tuple(scores.shape)}; expected ({b * len(boxes)}, C, {window}, {window})"
        )
    scores = scores.unflatten(0, (b, len(boxes)))  # (B, K, C, win, win)
    if len(boxes) == 1:
        return scores[:, 0, :, :h, :w]
    total = scores.new_zeros(b, scores.shape[2], hp, wp)
    count = scores.new_zeros(1, 1, hp, wp)
    for k, (y, x) in enumerate(boxes):
        total[:, :, y : y + window, x : x + window] += scores[:, k]
        count[:, :, y : y + window, x : x + window] += 1
    return (total / count)[:, :, :h, :w]


def resize_short_side(images: Tensor, short: int, long_max: int | None = None) -> Tensor:
    """Bilinear resize of (B, C, H, W) so that min(H, W) == short, keeping the aspect ratio; with `long_max`
    the scale is min(short / short side, long_max / long side), as mmcv's keep-ratio Resize with
    img_scale=(long_max, short)."""
    h, w = images.shape[-2:]
    scale = short / min(h, w)
    if long_max is not None:
        scale = min(scale, long_max / max(h, w))
    size = (
        (round(h * scale), round(w * scale))
        if long_max is not None
        else (max(short, round(h * scale)), max(short, round(w * scale)))
    )
    if size == (h, w):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)
