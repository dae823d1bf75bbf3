"""SynSeg's trainable head: FiLM text conditioning, a CLIPSeg-style decoder and a projector.

Inputs are frozen CLIP features (see `backbone.FrozenCLIP`) and one text embedding per (image, category)
pair; outputs are one logit map per pair and the pair's "conditional visual features"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synseg.models.registry import register_model


class ClipSegAttention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameter names (so CLIPSeg's weights and our
    saved heads load unchanged), computed batch-first with one fused SDPA call: no (L, N, E) transposes."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"decoder reduce_dim {dim} must be divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)  # as nn.MultiheadAttention initialises them
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, n, d = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (P, N, 3D)
        q, k, v = qkv.view(p, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)  # (P, H, N, d/H)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d/H)) v
        return self.out_proj(out.transpose(1, 2).reshape(p, n, d))


class ClipSegLayer(nn.Module):
    """CLIPSeg's decoder layer: post-norm transformer encoder layer with ReLU and no dropout; the parameter
    names of `nn.TransformerEncoderLayer`, which it equals numerically (see tests/test_clipseg_layer.py)."""

    def __init__(self, dim: int, n_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.self_attn = ClipSegAttention(dim, n_heads)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


def clipseg_layers(n_layers: int, reduce_dim: int, n_heads: int, ffn_dim: int) -> nn.ModuleList:
    """CLIPSeg's decoder layers (`ClipSegLayer`), one per extracted CLIP layer."""
    return nn.ModuleList(ClipSegLayer(reduce_dim, n_heads, ffn_dim) for _ in range(n_layers))


class FiLM(nn.Module):
    """FiLM as in CLIPSeg: text embedding (P, Dt) -> scale and shift (P, C) applied to the visual tokens."""

    def __init__(self, text_dim: int, channels: int) -> None:
        super().__init__()
        self.film_mul = nn.Linear(text_dim, channels)
        self.film_add = nn.Linear(text_dim, channels)

    def forward(self, tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.film_mul(text)[:, None] * tokens + self.film_add(text)[:, None]


class SynSegDecoder(nn.Module):
    """CLIPSeg-style decoder (module layout of CLIPSeg's, so its rd64 weights map one to one).

    Each extracted layer, deepest first, is reduced to `reduce_dim` and added to the stream; after the first
    reduction the stream is FiLM-conditioned on the text; one post-norm transformer layer per extracted layer;
    a transposed convolution turns the patch grid into a full-size logit map."""

    def __init__(
        self,
        width: int,
        text_dim: int,
        n_layers: int,
        patch_size: int,
        reduce_dim: int = 64,
        n_heads: int = 4,
        ffn_dim: int = 256,
        prior: bool = False,
        complex_upsample: bool = False,
    ) -> None:
        super().__init__()
        self.film = FiLM(text_dim, reduce_dim)
        self.reduces = nn.ModuleList(nn.Linear(width, reduce_dim) for _ in range(n_layers))
        self.layers = clipseg_layers(n_layers, reduce_dim, n_heads, ffn_dim)
        self.prior = nn.Linear(1, reduce_dim) if prior else None
        if complex_upsample:  # CLIPSeg "refined": a conv, then two (patch / 4)x transposed convolutions
            k = patch_size // 4
            self.upsample = nn.Sequential(
                nn.Conv2d(reduce_dim, reduce_dim, 3, padding=1),
                nn.ReLU(),
                nn.ConvTranspose2d(reduce_dim, reduce_dim // 2, k, stride=k),
                nn.ReLU(),
                nn.ConvTranspose2d(reduce_dim // 2, 1, k, stride=k),
            )
        else:
            self.upsample = nn.ConvTranspose2d(reduce_dim, 1, patch_size, stride=patch_size)
        self.reduce_dim = reduce_dim

    def forward(
        self,
        layers: Sequence[torch.Tensor],
        text: torch.Tensor,
        grid: tuple[int, int],
        prior: torch.Tensor | None = None,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """layers: (B, 1 + N, W) each, shallow to deep; index (P,): the image of each pair (None: B = P, one
        pair per image); text (P, Dt); prior (P, N) CLIP similarity or None.
        Returns logits (P, 1, H, W) and conditional features (P, N, reduce_dim)."""
        a = None
        for i, (act, reduce, layer) in enumerate(
            zip(reversed(layers), self.reduces, self.layers, strict=True)
        ):
            r = reduce(act)  # reduced once per image, then gathered per pair (the reduction is linear)
            r = r if index is None else r.index_select(0, index)
            a = r if a is None else a + r
            if i == 0:
                a = self.film(a, text)
                if self.prior is not None and prior is not None:
                    a = torch.cat([a[:, :1], a[:, 1:] + self.prior(prior[..., None])], dim=1)
            a = layer(a)
        feats = a[:, 1:]  # (P, N, R) without the class token
        return self.upsample_logits(feats, grid), feats

    def upsample_logits(self, feats: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(P, N, R) patch features -> (P, 1, H, W) logits through `self.upsample`."""
        p, n, r = feats.shape
        up = self.upsample
        if isinstance(up, nn.ConvTranspose2d) and up.stride == up.kernel_size and up.padding == (0, 0):
            # A transposed conv with stride = kernel = patch is a linear map R -> patch^2 pixels per patch,
            # so one matmul and a reshape (exactly equal, several times faster than the conv on CPU).
            k = up.kernel_size[0]
            pix = F.linear(feats, up.weight.view(r, k * k).T, None) + up.bias  # (P, N, k*k)
            return (
                pix.view(p, grid[0], grid[1], k, k)
                .permute(0, 1, 3, 2, 4)
                .reshape(p, 1, grid[0] * k, grid[1] * k)
            )
        return up(feats.transpose(1, 2).reshape(p, r, *grid))


class Projector(nn.Module):
    """Conditional features (P, N, R) on the patch grid -> synergy features (P, N, D) in the joint space."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_dim, in_dim, 3, padding=1), nn.GELU(), nn.Conv2d(in_dim, out_dim, 1)
        )

    def forward(self, feats: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        p, n, r = feats.shape
        x = self.net(feats.transpose(1, 2).reshape(p, r, *grid))  # (P, D, h, w)
        return x.flatten(2).transpose(1, 2)


class SynSegHead(nn.Module):
    """Everything trainable in SynSeg: decoder (with FiLM) and projector. `decoder_kwargs` go to
    `SynSegDecoder` (reduce_dim, n_heads, ffn_dim, prior, complex_upsample)."""

    def __init__(
        self, width: int, embed_dim: int, n_layers: int, patch_size: int, **decoder_kwargs: Any
    ) -> None:
        super().__init__()
        self.decoder = SynSegDecoder(width, embed_dim, n_layers, patch_size, **decoder_kwargs)
        self.projector = Projector(self.decoder.reduce_dim, embed_dim)

    def forward(
        self,
        layers: Sequence[torch.Tensor],
        text: torch.Tensor,
        grid: tuple[int, int],
        prior: torch.Tensor | None = None,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns logits (P, 1, H, W) and projected conditional features (P, N, D) (see the decoder)."""
        logits, feats = self.decoder(layers, text, grid, prior, index)
        return logits, self.projector(feats, grid)


@register_model
def synseg_head(
    width: int = 96, embed_dim: int = 128, n_layers: int = 3, patch_size: int = 8, **decoder_kwargs: Any
) -> SynSegHead:
    """SynSeg's trainable head; defaults fit the stand-in CLIP. CLIPSeg rd64 on ViT-B/16: width 768,
    embed 512, patch 16, ffn_dim 2048, complex_upsample=True."""
    return SynSegHead(width, embed_dim, n_layers, patch_size, **decoder_kwargs)
