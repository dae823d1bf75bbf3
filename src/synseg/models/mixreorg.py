"""MixReorg's trainable dense head: frozen CLIP layer tokens -> one joint-space embedding per patch.

The same decoder family as SynSeg's (CLIPSeg layout: per-layer reductions added deepest first, one post-norm
transformer layer each), without text conditioning: MixReorg segments by comparing patch embeddings with
text embeddings. "Progressive mixing" adds each patch's *source image* global token (the class token of the
same layer in the unmixed image) to the patch, scaled by a learnable per-layer gate."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from synseg.models.registry import register_model
from synseg.models.synseg import clipseg_layers


class MixReorgHead(nn.Module):
    """layers (B, 1 + N, W) each, shallow to deep, plus optional source globals (B, N, W) per layer ->
    patch embeddings (B, N, D) in CLIP's joint space, and a learnable logit scale (CLIP's init, 1 / 0.07)."""

    def __init__(
        self,
        width: int,
        embed_dim: int,
        n_layers: int,
        patch_size: int,
        reduce_dim: int = 64,
        n_heads: int = 4,
        ffn_dim: int = 256,
        gate_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.reduces = nn.ModuleList(nn.Linear(width, reduce_dim) for _ in range(n_layers))
        self.layers = clipseg_layers(n_layers, reduce_dim, n_heads, ffn_dim)
        self.gates = nn.Parameter(torch.full((n_layers,), float(gate_init)))
        self.proj = nn.Linear(reduce_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(
        self, layers: Sequence[torch.Tensor], globals_: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (B, N, D) patch embeddings (not normalised) and the logit scale (clamped at 100 like
        CLIP's). `globals_[i]` (B, N, W) is added to the patch tokens of `layers[i]` (progressive mixing)."""
        a = None
        deep_first = list(reversed(range(len(layers))))
        for i, reduce, layer in zip(deep_first, self.reduces, self.layers, strict=True):
            x = layers[i][:, 1:]  # (B, N, W) patch tokens
            if globals_ is not None:
                x = x + self.gates[i] * globals_[i]
            a = reduce(x) if a is None else a + reduce(x)
            a = layer(a)
        return self.proj(a), self.logit_scale.exp().clamp(max=100.0)


@register_model
def mixreorg_head(
    width: int = 96, embed_dim: int = 128, n_layers: int = 3, patch_size: int = 8, **kwargs: float
) -> MixReorgHead:
    """MixReorg's dense head; defaults fit the stand-in CLIP (ViT-B/16: width 768, embed 512, patch 16)."""
    return MixReorgHead(width, embed_dim, n_layers, patch_size, **kwargs)
