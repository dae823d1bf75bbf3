"""MixReorg's contextual patch mixing and its exact inverse (see docs/methods.md, MixReorg).

Images are split into groups of M consecutive images; at every patch position each of the M mixed images
of a group takes the patch of one image of the group, so the group's mixed images together hold every source
patch exactly once. Sources are assigned per contiguous `block x block` cell of the patch grid (each source
keeps local context), balanced so that each mixed image takes about 1/M of its cells from each source.
Everything is index arithmetic plus one gather / scatter: no Python loop over patches."""

from __future__ import annotations

import torch
from torch import Tensor


def _check_grid(n: int, grid: tuple[int, int], what: str) -> tuple[int, int]:
    h, w = int(grid[0]), int(grid[1])
    if h < 1 or w < 1 or h * w != n:
        raise ValueError(
            f"{what}: grid {tuple(grid)} does not match N={n} tokens; expected grid[0]*grid[1]==N"
        )
    return h, w


def mix_sources(
    batch: int,
    grid: tuple[int, int],
    group_size: int = 2,
    block: int = 2,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """(B, N) long: the batch index of the image each patch of each mixed image comes from."""
    h, w = int(grid[0]), int(grid[1])
    if group_size < 1 or batch % group_size:
        raise ValueError(f"group_size={group_size}: expected a positive divisor of the batch size {batch}")
    if block < 1:
        raise ValueError(f"block={block}: expected >= 1 patches")
    ch, cw = -(-h // block), -(-w // block)  # cells per column / row (ragged edge cells allowed)
    groups, n_cells = batch // group_size, ch * cw
    # A random ranking of the cells of each group; cell offset = rank mod M balances the sources.
    rank = torch.rand(groups, n_cells, generator=generator).argsort(-1).argsort(-1)  # (G, C)
    offset = (rank % group_size).to(device)
    rows = torch.arange(h, device=device) // block
    cols = torch.arange(w, device=device) // block
    cell = (rows[:, None] * cw + cols[None, :]).flatten()  # (N,) cell of each patch position
    m = torch.arange(group_size, device=device)
    # mixed image g*M + m at cell c takes image g*M + (m + offset[g, c]) % M: a cyclic permutation per cell
    rel = (m[None, :, None] + offset[:, None, cell]) % group_size  # (G, M, N)
    base = torch.arange(groups, device=device)[:, None, None] * group_size
    return (base + rel).reshape(batch, h * w)


def apply_sources(tokens: Tensor, src: Tensor) -> Tensor:
    """Gathers (B, N, ...) tokens by a (B, N) source map: out[b, n] = tokens[src[b, n], n]."""
    if src.shape != tokens.shape[:2]:
        raise ValueError(f"src {tuple(src.shape)}: expected the tokens' (B, N) {tuple(tokens.shape[:2])}")
    pos = torch.arange(tokens.shape[1], device=tokens.device).expand_as(src)
    return tokens[src, pos]


def mix_patches(
    tokens: Tensor,
    grid: tuple[int, int],
    group_size: int = 2,
    block: int = 2,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """(B, N, D) tokens -> (mixed (B, N, D), src (B, N)). Patches keep their grid position."""
    b, n = tokens.shape[:2]
    _check_grid(n, grid, "mix_patches")
    src = mix_sources(b, grid, group_size, block, generator, tokens.device)
    return apply_sources(tokens, src), src


def restore_patches(mixed: Tensor, src: Tensor) -> Tensor:
    """Inverse of `mix_patches`: scatters each mixed patch back to its source image (same position)."""
    if src.shape != mixed.shape[:2]:
        raise ValueError(
            f"src {tuple(src.shape)}: expected the mixed tokens' (B, N) {tuple(mixed.shape[:2])}"
        )
    pos = torch.arange(mixed.shape[1], device=mixed.device).expand_as(src)
    hits = torch.zeros(src.shape, dtype=torch.long, device=src.device).index_put_(
        (src, pos), torch.ones_like(src), accumulate=True
    )
    if not bool((hits == 1).all()):
        raise ValueError("src: not a permutation of the batch at every position; expected a mix_patches map")
    restored = torch.empty_like(mixed)
    restored[src, pos] = mixed  # (B, N, ...) scatter: a bijection per position
    return restored


def to_patches(images: Tensor, patch: int) -> tuple[Tensor, tuple[int, int]]:
    """(B, C, H, W) -> ((B, N, C * patch * patch), grid); H and W must be multiples of `patch`."""
    b, c, hh, ww = images.shape
    if hh % patch or ww % patch:
        raise ValueError(f"images {hh}x{ww}: expected multiples of the patch size {patch}")
    h, w = hh // patch, ww // patch
    x = images.reshape(b, c, h, patch, w, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, h * w, c * patch * patch), (h, w)


def from_patches(patches: Tensor, grid: tuple[int, int], channels: int, patch: int) -> Tensor:
    """Inverse of `to_patches`."""
    b = patches.shape[0]
    h, w = grid
    x = patches.reshape(b, h, w, channels, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels, h * patch, w * patch)


def mix_images(
    images: Tensor,
    patch: int,
    group_size: int = 2,
    block: int = 2,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """`mix_patches` on pixels through the patch grid: (B, C, H, W) -> (mixed images, src (B, N))."""
    tokens, grid = to_patches(images, patch)
    mixed, src = mix_patches(tokens, grid, group_size, block, generator)
    return from_patches(mixed, grid, images.shape[1], patch), src
