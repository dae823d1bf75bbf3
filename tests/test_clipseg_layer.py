"""`ClipSegLayer` equals PyTorch's post-norm `nn.TransformerEncoderLayer` (ReLU, no dropout), parameter names
included, and the decoder's per-image reduction equals reducing the gathered per-pair layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from synseg.models.synseg import ClipSegLayer, SynSegDecoder


def reference_layer(dim: int, heads: int, ffn: int) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        dim, heads, dim_feedforward=ffn, dropout=0.0, activation="relu", batch_first=True, norm_first=False
    )


@pytest.mark.parametrize("train", [True, False])
def test_clipseg_layer_matches_torch_encoder_layer(train: bool) -> None:
    torch.manual_seed(0)
    ref = reference_layer(64, 4, 256)
    ours = ClipSegLayer(64, 4, 256)
    assert set(ours.state_dict()) == set(ref.state_dict())  # CLIPSeg weights and saved heads load unchanged
    ours.load_state_dict(ref.state_dict())
    ref.train(train)
    ours.train(train)
    x = torch.randn(5, 17, 64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y_ref, y = ref(x), ours(x2)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    if train:
        g = torch.randn_like(y)
        y_ref.backward(g)
        y.backward(g)
        torch.testing.assert_close(x2.grad, x.grad, atol=1e-5, rtol=1e-5)
        for (name, p_ref), p in zip(ref.named_parameters(), ours.parameters(), strict=True):
            torch.testing.assert_close(p.grad, p_ref.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_same_seed_same_initialisation_as_torch_layer() -> None:
    torch.manual_seed(3)
    ref = reference_layer(32, 2, 64)
    torch.manual_seed(3)
    ours = ClipSegLayer(32, 2, 64)
    for name, value in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, msg=name)


def test_heads_must_divide_width() -> None:
    with pytest.raises(ValueError, match="divisible"):
        ClipSegLayer(30, 4, 64)


def test_decoder_per_image_reduction_equals_per_pair_layers() -> None:
    torch.manual_seed(0)
    dec = SynSegDecoder(width=24, text_dim=16, n_layers=3, patch_size=4, reduce_dim=32, n_heads=4, ffn_dim=64)
    layers = [torch.randn(3, 1 + 16, 24) for _ in range(3)]  # 3 images, 4x4 grid
    index = torch.tensor([0, 0, 2, 1, 2])
    text = torch.randn(5, 16)
    logits, feats = dec(layers, text, (4, 4), index=index)
    ref_logits, ref_feats = dec([x[index] for x in layers], text, (4, 4))
    assert logits.shape == (5, 1, 16, 16)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats, ref_feats, atol=1e-5, rtol=1e-5)


def test_linear_upsample_equals_the_transposed_conv() -> None:
    torch.manual_seed(0)
    dec = SynSegDecoder(width=24, text_dim=16, n_layers=1, patch_size=4, reduce_dim=8, n_heads=2, ffn_dim=16)
    feats = torch.randn(5, 3 * 2, 8)  # grid 3 x 2 (not square)
    conv = dec.upsample(feats.transpose(1, 2).reshape(5, 8, 3, 2))
    out = dec.upsample_logits(feats, (3, 2))
    assert out.shape == (5, 1, 12, 8)
    torch.testing.assert_close(out, conv, atol=1e-6, rtol=1e-5)
