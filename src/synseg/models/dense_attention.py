"""Training-free dense features from the last block of a frozen CLIP ViT: MaskCLIP's value path and NACLIP's
neighbour-aware attention (Hajimiri et al., "Pay Attention to Your Neighbours", WACV 2025).

Both replace the last residual block only; the blocks before it run unchanged. Choices we had to make for
NACLIP (the paper describes the method, not every constant): key-key logits scaled by 1/sqrt(head dim) as
in CLIP's own attention; the Gaussian prior is added to the logits unnormalised (peak 1 on the patch itself),
sigma = 5 patches, over the patch grid of the image actually encoded (one sliding window); the class token
stays a query and key with no prior (its row and column get 0) and its output is dropped; no residual and no
MLP (NACLIP's "reduced architecture"), so a patch's output is out_proj(attention . values)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NACLIP_SIGMA = 5.0  # the paper's standard deviation of the Gaussian window, in patches


def maskclip_dense(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """MaskCLIP: the last block's value embeddings through the output projection (no q-k attention, no
    residual, no MLP), which keeps each patch's own semantics. x (B, 1 + N, W) -> (B, N, W)."""
    attn = blk.attn
    y = blk.ln_1(x)[:, 1:]
    wv = attn.in_proj_weight[2 * attn.embed_dim :]
    bv = attn.in_proj_bias[2 * attn.embed_dim :] if attn.in_proj_bias is not None else None
    return attn.out_proj(F.linear(y, wv, bv))


def neighbourhood_prior(grid: tuple[int, int], sigma: float = NACLIP_SIGMA) -> torch.Tensor:
    """(N, N) Gaussian window over the h x w patch grid (row-major): exp(-|p_i - p_j|^2 / (2 sigma^2))."""
    h, w = grid
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()  # (N, 2) patch coordinates
    return torch.exp(-torch.cdist(pos, pos).square() / (2 * sigma**2))


def naclip_dense(
    blk: nn.Module, x: torch.Tensor, grid: tuple[int, int], sigma: float = NACLIP_SIGMA
) -> torch.Tensor:
    """NACLIP's last block: softmax(k k^T / sqrt(d) + Gaussian prior) v per head, then the output projection;
    no residual, no MLP. x (B, 1 + N, W) with the class token first -> (B, N, W)."""
    attn = blk.attn
    b, length, width = x.shape
    heads = attn.num_heads
    d = width // heads
    _, k, v = F.linear(blk.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    k = k.view(b, length, heads, d).transpose(1, 2)  # (B, heads, L, d)
    v = v.view(b, length, heads, d).transpose(1, 2)
    logits = k @ k.transpose(-1, -2) * d**-0.5  # (B, heads, L, L) key-key similarity
    prior = torch.zeros(length, length, dtype=logits.dtype, device=logits.device)
    prior[1:, 1:] = neighbourhood_prior(grid, sigma).to(prior)  # class token: no neighbourhood
    out = (logits + prior).softmax(-1) @ v  # (B, heads, L, d)
    out = out.transpose(1, 2).reshape(b, length, width)
    return attn.out_proj(out)[:, 1:]
