"""A convolutional patch embedding for small ViTs ("Early convolutions help transformers see better", Xiao et
al. 2021): stride-2 3x3 convolutions replace the single patch x patch convolution of `visual.conv1`.

The toy stand-in CLIP uses it because a plain patch-8 ViT trained for a few CPU-minutes on 64 px images
learns colour but hardly shape (circle and heart share a hue). Its output has the plain stem's shape,
(B, width, H/p, W/p), so every consumer of `visual.conv1` (MaskCLIP dense path, decoders) works unchanged."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvStem(nn.Module):
    """log2(patch) stride-2 3x3 conv + GELU stages (channels `channels`, then `width`), then a 1x1 conv."""

    def __init__(self, width: int, patch_size: int, channels: Sequence[int], in_chans: int = 3) -> None:
        super().__init__()
        n_stages = patch_size.bit_length() - 1
        if 1 << n_stages != patch_size or len(channels) != n_stages - 1:
            raise ValueError(
                f"conv stem: patch_size {patch_size} needs to be a power of 2 with log2(patch)-1 = "
                f"{n_stages - 1} hidden channel counts; got channels={list(channels)}"
            )
        dims = [in_chans, *channels, width]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GELU()]
        layers.append(nn.Conv2d(width, width, 1))
        self.stages = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, width, H / patch, W / patch)."""
        return self.stages(images)
