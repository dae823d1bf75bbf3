"""NACLIP (`naclip`, a training-free Segmenter): the neighbourhood prior and the modified last block against a
hand computation in numpy (per head, per query), its wiring into FrozenCLIP / Segmenter, and `make eval
MODEL=naclip` on toy folders."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from synseg.eval import evaluate
from synseg.models import Segmenter
from synseg.models.backbone import FrozenCLIP
from synseg.models.dense_attention import neighbourhood_prior
from tests.test_eval_cli import eval_cfg, toy_test  # noqa: F401 - toy_test is a fixture
from tests.tiny_checkpoint import RANDOM_BACKBONE


def test_neighbourhood_prior_by_hand() -> None:
    prior = neighbourhood_prior((2, 3), sigma=5.0)  # patches (row, col) in row-major order
    assert prior.shape == (6, 6) and torch.allclose(prior.diagonal(), torch.ones(6))
    assert prior[0, 5].item() == pytest.approx(math.exp(-(1 + 4) / 50))  # (0,0) - (1,2)
    assert prior[1, 3].item() == pytest.approx(math.exp(-(1 + 1) / 50))  # (0,1) - (1,0)
    assert prior[2, 0].item() == pytest.approx(math.exp(-4 / 50))  # (0,2) - (0,0)
    assert torch.equal(prior, prior.T)


def numpy_naclip(blk: torch.nn.Module, x: np.ndarray, grid: tuple[int, int], sigma: float) -> np.ndarray:
    """The paper's last block for one image, written out: per head h and query i, softmax over keys j of
    k_i . k_j / sqrt(d) + exp(-|p_i - p_j|^2 / (2 sigma^2)) (0 for the class token), times v_j; the heads
    concatenated through out_proj; no residual, no MLP. x (1 + N, W) -> (N, W)."""
    w_in = blk.attn.in_proj_weight.detach().double().numpy()
    b_in = blk.attn.in_proj_bias.detach().double().numpy()
    ln = blk.ln_1
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    gamma, beta = ln.weight.detach().double().numpy(), ln.bias.detach().double().numpy()
    y = (x - mu) / np.sqrt(var + ln.eps) * gamma + beta
    width = x.shape[1]
    heads = blk.attn.num_heads
    d = width // heads
    k = y @ w_in[width : 2 * width].T + b_in[width : 2 * width]
    v = y @ w_in[2 * width :].T + b_in[2 * width :]
    coords = [(-1, -1)] + [(r, c) for r in range(grid[0]) for c in range(grid[1])]  # class token first
    out = np.zeros_like(x)
    for h in range(heads):
        cols = slice(h * d, (h + 1) * d)
        for i in range(len(coords)):
            logits = np.array([k[i, cols] @ k[j, cols] / math.sqrt(d) for j in range(len(coords))])
            if i > 0:
                for j in range(1, len(coords)):
                    dist2 = (coords[i][0] - coords[j][0]) ** 2 + (coords[i][1] - coords[j][1]) ** 2
                    logits[j] += math.exp(-dist2 / (2 * sigma**2))
            weights = np.exp(logits - logits.max())
            out[i, cols] = (weights / weights.sum()) @ v[:, cols]
    proj = blk.attn.out_proj
    out = out @ proj.weight.detach().double().numpy().T + proj.bias.detach().double().numpy()
    return out[1:]


@pytest.mark.parametrize("sigma", [5.0, 0.7])
def test_naclip_last_block_equals_a_hand_computation(sigma: float) -> None:
    torch.manual_seed(0)
    bb = FrozenCLIP("toyclip-vit-p8c", None, extract_layers=(2,), dense_mode="naclip", naclip_sigma=sigma)
    v = bb.clip.visual
    images = torch.randn(2, 3, 32, 40, generator=torch.Generator().manual_seed(1))  # a 4 x 5 grid
    got = bb.encode_images(images)["dense"]
    before_last = bb.encode_images(images)["layers"][0]  # tokens entering the last block (block 3 of 4)
    assert len(v.transformer.resblocks) == 4 and got.shape == (2, 20, bb.embed_dim)
    for n in range(2):
        hand = numpy_naclip(v.transformer.resblocks[3], before_last[n].double().numpy(), (4, 5), sigma)
        hand = v.ln_post(torch.from_numpy(hand).float()) @ v.proj
        torch.testing.assert_close(got[n], hand, atol=1e-4, rtol=1e-4)
    maskclip = FrozenCLIP("toyclip-vit-p8c", None, extract_layers=(2,), dense_mode="maskclip")
    maskclip.load_state_dict(bb.state_dict())
    assert (maskclip.encode_images(images)["dense"] - got).abs().max() > 1e-2  # attention changes the tokens


def test_naclip_segmenter_is_training_free_and_checks_its_backbone() -> None:
    torch.manual_seed(0)
    seg = Segmenter.training_free("naclip", {"model_name": "toyclip-vit-p8c", "pretrained": None})
    assert seg.head is None and seg.backbone.dense_mode == "naclip"
    seg.set_classes(["circle", "star", "red heart"])
    scores = seg.scores(torch.rand(2, 3, 36, 50))
    assert scores.shape == (2, 3, 36, 50)
    # a softmax over the classes
    torch.testing.assert_close(scores.sum(1), torch.ones(2, 36, 50), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="needs backbone.dense_mode=naclip"):
        Segmenter("naclip", {"model_name": "toyclip-vit-p8c", "pretrained": None, "dense_mode": "maskclip"})
    with pytest.raises(ValueError, match="needs backbone.dense_mode=naclip, not maskclip"):  # the default
        Segmenter("naclip", {"model_name": "toyclip-vit-p8c", "pretrained": None})


def test_make_eval_model_naclip(tmp_path: Path, toy_test: Path) -> None:  # noqa: F811 - the fixture
    metrics = evaluate(eval_cfg(tmp_path, "method=naclip", RANDOM_BACKBONE, f"data_root={toy_test}"))
    assert metrics["toy/n_images"] == 24 and 0.0 <= metrics["toy/mIoU"] <= 1.0
    per_class = np.array([v for k, v in metrics.items() if "/per_class/" in k])
    assert np.isfinite(per_class).all()
    assert "naclip" in (tmp_path / "logs" / "eval" / "naclip" / "config.yaml").read_text()
