"""The paper-scale configuration composes, instantiates with `pretrained` set to none (no network), and
runs one SynSeg training step on toy data at 224 px with the ViT-B/16 architecture."""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import open_dict

from tests.test_configs import compose_train


def test_synseg_cc12m_composes_and_runs_one_step_at_224(toy_folders: Path, tmp_path: Path) -> None:
    from tests.test_datamodule import collect, make_dm

    cfg = compose_train(["experiment=synseg_cc12m", f"paths.root_dir={tmp_path}"])
    assert (
        cfg.data.hf.path == "pixparse/cc12m-wds" and cfg.data.batch_size == 64 and cfg.data.image_size == 224
    )
    assert (
        cfg.model.segmenter.backbone.model_name == "ViT-B-16"
        and cfg.model.segmenter.backbone.pretrained == "openai"
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.model.segmenter.backbone.pretrained = None  # no network in tests
        cfg.model.decoder_init = "random"  # CLIPSeg weights need the hub
    datamodule = hydra.utils.instantiate(cfg.data)
    assert datamodule.transform.size == 224
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model)
    assert model.backbone.patch_size == 16 and model.backbone.width == 768 and model.backbone.embed_dim == 512
    batch = collect(
        make_dm(toy_folders, "toy", world=1, workers=0, steps=1, batch=2, backbone="ViT-B-16", image_size=224)
    )[0]
    assert batch["images"].shape == (2, 3, 224, 224) and batch["caption_tokens"].shape[1] == 77
    loss = model.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.head.decoder.parameters())
