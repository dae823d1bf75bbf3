"""The stand-in CLIP: trains with open_clip's ClipLoss, its loss falls, its export loads through open_clip."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from synseg.lit.optim import warmup_cosine
from synseg.lit.toyclip_module import ToyClipModule
from tests.conftest import ROOT
from tests.modules import build_module


class _FakeTrainer:
    world_size, max_steps = 1, 30


def test_warmup_cosine_schedule() -> None:
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0)


def test_loss_falls_in_a_few_steps(toy_folders: Path) -> None:
    from tests.test_datamodule import collect, make_dm

    torch.manual_seed(0)
    batch = collect(make_dm(toy_folders, "toy", world=1, workers=0, steps=1, batch=32))[0]
    module = build_module("toyclip", "model.warmup_steps=0")
    module.setup("fit")  # ClipLoss with rank 0, world 1 (trainer not needed for that)
    opt = torch.optim.AdamW(module.model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        f_img, f_txt, scale = module.model(batch["images"], batch["caption_tokens"])
        loss = module.loss_fn(f_img, f_txt, scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.5 * first, losses  # ln(32) = 3.47 at chance


def test_clip_loss_matches_a_hand_written_symmetric_infonce() -> None:
    from open_clip.loss import ClipLoss

    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    logits = 10.0 * img @ txt.T
    labels = torch.arange(6)
    ref = 0.5 * (
        torch.nn.functional.cross_entropy(logits, labels)
        + torch.nn.functional.cross_entropy(logits.T, labels)
    )
    assert float(ClipLoss()(img, txt, torch.tensor(10.0))) == pytest.approx(float(ref), rel=1e-5)


def test_export_loads_through_build_open_clip_like_a_pretrained_tag(tmp_path: Path) -> None:
    from synseg.models.toyclip import build_open_clip

    module = build_module("toyclip", f"model.export_dir={tmp_path}")
    path = module.export({"test/top1": 0.5}, tmp_path / "run")
    assert path == tmp_path / "toyclip-vit-p8c.pt"
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"test/top1": 0.5}
    loaded = build_open_clip("toyclip-vit-p8c", pretrained=str(path))
    x = torch.randn(2, 3, 64, 64)
    module.model.eval()
    assert torch.allclose(loaded.eval().encode_image(x), module.model.encode_image(x), atol=1e-5)
    with pytest.raises(FileNotFoundError, match="local checkpoint"):
        build_open_clip("toyclip-vit-p8c", pretrained="openai")


def test_conv_stem_keeps_the_patch_grid_and_rejects_bad_patch_sizes() -> None:
    from synseg.models.conv_stem import ConvStem

    stem = ConvStem(width=96, patch_size=8, channels=(24, 48))
    assert stem(torch.randn(2, 3, 64, 48)).shape == (2, 96, 8, 6)
    stem16 = ConvStem(width=32, patch_size=16, channels=(8, 16, 24))
    assert stem16(torch.randn(1, 3, 64, 64)).shape == (1, 32, 4, 4)
    with pytest.raises(ValueError, match="power of 2"):
        ConvStem(width=96, patch_size=12, channels=(24, 48))
    with pytest.raises(ValueError, match="hidden channel counts"):
        ConvStem(width=96, patch_size=8, channels=(24,))


class _Transform:
    mean = torch.tensor([0.48, 0.46, 0.41]).view(1, 3, 1, 1)
    std = torch.tensor([0.27, 0.26, 0.28]).view(1, 3, 1, 1)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_random_grayscale_turns_picked_images_grey_and_stays_normalised(p: float) -> None:
    module: ToyClipModule = build_module("toyclip", f"model.grayscale_p={p}")
    module.trainer = types.SimpleNamespace(datamodule=types.SimpleNamespace(transform=_Transform))
    torch.manual_seed(0)
    rgb = torch.rand(4, 3, 8, 8)
    images = (rgb - _Transform.mean) / _Transform.std
    out = module.random_grayscale(images)
    if p == 0.0:
        assert out is images
        return
    back = out * _Transform.std + _Transform.mean  # un-normalised: R = G = B = the luma of the input
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    for c in range(3):
        assert torch.allclose(back[:, c], luma, atol=1e-5)


@pytest.mark.slow
def test_standin_clip_build_meets_its_targets(tmp_path: Path) -> None:
    """`experiment=toyclip` end to end: trained in <= 5 min on 2 cores, top-1 >= 0.70 on the toy_dev tuning
    split (val/top1; toy test top-1 is reported, never a target)."""
    start = time.time()
    subprocess.run(
        [sys.executable, "-m", "synseg.train", "experiment=toyclip", f"paths.root_dir={tmp_path}"],
        cwd=ROOT,
        check=True,
    )
    minutes = (time.time() - start) / 60
    metrics = json.loads((tmp_path / "data" / "toyclip" / "metrics.json").read_text())
    assert (tmp_path / "data" / "toyclip" / "toyclip-vit-p8c.pt").is_file()
    assert metrics["val/top1"] >= 0.70, metrics  # read on toy_dev (configs/experiment/toyclip.yaml)
    assert "test/top1" in metrics
    assert minutes <= 5.0, f"{minutes:.1f} min"
