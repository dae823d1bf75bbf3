"""`FrozenCLIP.encode_images` against open_clip itself: intermediate tokens, the pooled embedding, MaskCLIP's
dense tokens by hand, and the early stop (the last block is not run when nothing needs it)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from synseg.models.backbone import FrozenCLIP


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("dense_mode", ["maskclip", "tokens"])
def test_encode_images_matches_open_clip(images: torch.Tensor, dense_mode: str) -> None:
    torch.manual_seed(0)
    bb = FrozenCLIP("toyclip-vit-p8c", None, extract_layers=(0, 2), dense_mode=dense_mode)
    v = bb.clip.visual
    out = bb.encode_images(images, pooled=True)
    ref = v.forward_intermediates(
        images, indices=[0, 2], output_fmt="NLC", output_extra_tokens=True, intermediates_only=True
    )
    for got, tokens, prefix in zip(
        out["layers"], ref["image_intermediates"], ref["image_intermediates_prefix"], strict=True
    ):
        torch.testing.assert_close(got, torch.cat([prefix, tokens], 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["pooled"], bb.clip.encode_image(images), atol=1e-5, rtol=1e-5)
    assert out["grid"] == (8, 8) and out["dense"].shape == (3, 64, bb.embed_dim)
    if dense_mode == "maskclip":  # value projection of the last block, by hand
        x = v.forward_intermediates(
            images, indices=[2], output_fmt="NLC", output_extra_tokens=True, intermediates_only=True
        )
        x = torch.cat([x["image_intermediates_prefix"][0], x["image_intermediates"][0]], 1)
        blk = v.transformer.resblocks[3]
        w = blk.attn.in_proj_weight[2 * v.transformer.width :]
        b = blk.attn.in_proj_bias[2 * v.transformer.width :]
        hand = blk.attn.out_proj(F.linear(blk.ln_1(x)[:, 1:], w, b))
        torch.testing.assert_close(out["dense"], v.ln_post(hand) @ v.proj, atol=1e-5, rtol=1e-5)


def test_last_block_skipped_when_not_needed(images: torch.Tensor) -> None:
    bb = FrozenCLIP("toyclip-vit-p8c", None, extract_layers=(0, 1, 2), dense_mode="maskclip")
    calls = []
    last = bb.clip.visual.transformer.resblocks[-1]
    hook = last.register_forward_hook(lambda *a: calls.append(1))
    try:
        without = bb.encode_images(images)
        assert calls == [] and "pooled" not in without
        with_pooled = bb.encode_images(images, pooled=True)
        assert calls == [1]
    finally:
        hook.remove()
    torch.testing.assert_close(without["dense"], with_pooled["dense"])
    for a, b in zip(without["layers"], with_pooled["layers"], strict=True):
        torch.testing.assert_close(a, b)
