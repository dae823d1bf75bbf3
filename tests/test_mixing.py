"""Patch mixing: exact restoration, labels that match where each patch came from, the group and block
structure of the source map, and the pixel helper (property tests over sizes)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from synseg.mixing import from_patches, mix_images, mix_patches, mix_sources, restore_patches, to_patches


@settings(max_examples=60, deadline=None)
@given(
    groups=st.integers(1, 4),
    m=st.integers(1, 4),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    block=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_mix_then_restore_is_exact_and_src_says_where_patches_came_from(
    groups: int, m: int, h: int, w: int, block: int, seed: int
) -> None:
    b, n, d = groups * m, h * w, 3
    tokens = torch.randn(b, n, d)
    mixed, src = mix_patches(tokens, (h, w), m, block, torch.Generator().manual_seed(seed))
    assert mixed.shape == tokens.shape and src.shape == (b, n) and src.dtype == torch.long
    assert torch.equal(restore_patches(mixed, src), tokens)
    # label agreement: mixed patch (i, p) is the source's own patch at the same position p
    for i in range(b):
        for p in range(n):
            assert torch.equal(mixed[i, p], tokens[src[i, p], p])
    # within a group, at each position, the sources are a permutation of the group's indices
    grp = src.view(groups, m, n)
    expect = torch.arange(b).view(groups, m, 1).expand(-1, -1, n)
    assert torch.equal(grp.sort(1).values, expect)
    # sources are constant on each block x block cell of the grid
    cell = ((torch.arange(h) // block)[:, None] * 1000 + (torch.arange(w) // block)[None, :]).flatten()
    for c in cell.unique():
        at = src[:, cell == c]
        assert bool((at == at[:, :1]).all())


def test_mix_is_balanced_and_mixes_for_m_2() -> None:
    src = mix_sources(8, (8, 8), 2, 2, torch.Generator().manual_seed(0))  # 16 cells of 2x2
    own = (src == torch.arange(8)[:, None]).float().mean(1)
    assert torch.allclose(own, torch.full((8,), 0.5))  # ratio 1/M exactly when M divides the cell count


def test_mix_is_seeded_and_varies() -> None:
    a = mix_sources(4, (6, 6), 2, 2, torch.Generator().manual_seed(1))
    b = mix_sources(4, (6, 6), 2, 2, torch.Generator().manual_seed(1))
    c = mix_sources(4, (6, 6), 2, 2, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="group_size=3"):
        mix_patches(torch.randn(4, 4, 2), (2, 2), 3)
    with pytest.raises(ValueError, match="grid"):
        mix_patches(torch.randn(4, 5, 2), (2, 2), 2)
    mixed, src = mix_patches(torch.randn(4, 4, 2), (2, 2), 2, 1)
    with pytest.raises(ValueError, match="not a permutation"):
        restore_patches(mixed, torch.zeros_like(src))


def test_mix_images_moves_whole_pixel_patches() -> None:
    images = torch.randn(4, 3, 16, 24)
    tokens, grid = to_patches(images, 8)
    assert grid == (2, 3) and torch.equal(from_patches(tokens, grid, 3, 8), images)
    mixed, src = mix_images(images, 8, 2, 1, torch.Generator().manual_seed(0))
    for i in range(4):
        for p in range(6):
            y, x = divmod(p, 3)
            sl = (slice(None), slice(8 * y, 8 * y + 8), slice(8 * x, 8 * x + 8))
            assert torch.equal(mixed[i][sl], images[src[i, p]][sl])
    with pytest.raises(ValueError, match="multiples of the patch size"):
        mix_images(torch.randn(2, 3, 10, 16), 8)
