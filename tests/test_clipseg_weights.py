"""CLIPSeg's decoder weights map one to one onto SynSegDecoder: same outputs on the same inputs (offline:
a randomly initialised transformers CLIPSeg decoder of a small config stands in for the released one)."""

from __future__ import annotations

import pytest
import torch

from synseg.models.clipseg_weights import load_clipseg_decoder, map_clipseg_decoder_state
from synseg.models.synseg import SynSegDecoder


@pytest.mark.parametrize("complex_upsample", [False, True])
def test_mapped_decoder_matches_transformers_clipseg(complex_upsample: bool) -> None:
    from transformers import CLIPSegConfig
    from transformers.models.clipseg.modeling_clipseg import CLIPSegDecoder

    torch.manual_seed(0)
    cfg = CLIPSegConfig(
        text_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        vision_config={
            "hidden_size": 48,
            "num_hidden_layers": 4,
            "num_attention_heads": 2,
            "intermediate_size": 96,
            "patch_size": 16,
            "image_size": 64,
        },
        projection_dim=24,
        extract_layers=[1, 2, 3],
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=40,
        use_complex_transposed_convolution=complex_upsample,
    )
    hf = CLIPSegDecoder(cfg).eval()
    ours = SynSegDecoder(
        width=48,
        text_dim=24,
        n_layers=3,
        patch_size=16,
        reduce_dim=16,
        n_heads=2,
        ffn_dim=40,
        complex_upsample=complex_upsample,
    ).eval()
    ours.load_state_dict(map_clipseg_decoder_state(hf.state_dict()))

    layers = [torch.randn(2, 17, 48) for _ in range(3)]  # 4x4 grid + class token
    cond = torch.randn(2, 24)
    with torch.no_grad():
        expected = hf(tuple(layers), cond).logits  # (2, 64, 64)
        got, _ = ours(layers, cond, (4, 4))
    assert got.shape == (2, 1, 64, 64)
    assert torch.allclose(got[:, 0], expected.reshape(2, 64, 64), rtol=1e-5, atol=1e-4)


def test_unreachable_clipseg_weights_give_a_clear_error() -> None:
    decoder = SynSegDecoder(width=48, text_dim=24, n_layers=3, patch_size=16)
    with pytest.raises(
        RuntimeError, match=r"model.decoder_ckpt: cannot load CLIPSeg weights 'no-org/no-clipseg'"
    ):
        load_clipseg_decoder(decoder, "no-org/no-clipseg")
