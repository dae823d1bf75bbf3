"""SynSegModule: a training step for each recipe, gradients, NaN naming, empty batches, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from synseg.lit.synseg_module import SynSegModule

BACKBONE = {"model_name": "toyclip-vit-p8c", "pretrained": None, "extract_layers": [0, 1, 2]}
RECIPES = {
    "paper": {},
    "weak": {
        "fss_source": "frozen",
        "negatives": {"weight": 1.0},
        "presence_weight": 1.0,
        "prompt_nce_weight": 1.0,
        "head": {"prior": True},
    },
    "soft_warmup": {"loss": {"clamp_mode": "soft"}, "align_warmup_steps": 10},
}


@pytest.fixture(scope="module")
def toy_batch(toy_folders: Path) -> dict:
    from tests.test_datamodule import collect, make_dm

    return collect(make_dm(toy_folders, "toy", world=1, workers=0, steps=1, batch=6))[0]


def make_module(**kw) -> SynSegModule:
    torch.manual_seed(0)
    kw = {"backbone": BACKBONE, **kw}
    return SynSegModule(**kw)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_training_step_runs_and_trains_the_head(recipe: str, toy_batch: dict) -> None:
    module = make_module(**RECIPES[recipe])
    loss = module.training_step(toy_batch, 0)
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    grads = {n: p.grad for n, p in module.head.named_parameters()}
    decoder_missing = [n for n, g in grads.items() if n.startswith("decoder.") and (g is None or not g.any())]
    assert not decoder_missing, decoder_missing[:5]
    projector = [g for n, g in grads.items() if n.startswith("projector.")]
    # V comes from the projector only with fss_source=conditioned (the paper); frozen V bypasses it.
    assert all(g is not None for g in projector) == (module.hparams.fss_source == "conditioned")
    assert all(p.grad is None for p in module.backbone.parameters())  # frozen


def test_batch_without_any_category_still_runs(toy_batch: dict) -> None:
    module = make_module()
    batch = dict(
        toy_batch,
        category_valid=torch.zeros_like(toy_batch["category_valid"]),
        categories=[[""] * 4 for _ in toy_batch["categories"]],
    )
    loss = module.training_step(batch, 0)
    assert float(loss) == 0.0
    loss.backward()


def test_checkpoint_and_optimiser_leave_the_frozen_backbone_out(toy_batch: dict) -> None:
    module = make_module()
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    assert ckpt["state_dict"] and not any(k.startswith("backbone.") for k in ckpt["state_dict"])
    module.on_load_checkpoint(ckpt)
    module.load_state_dict(ckpt["state_dict"])  # strict: the backbone keys were filled back in

    class _Trainer:
        max_steps = 10

    module._trainer = _Trainer()  # configure_optimizers reads max_steps only
    opt = module.configure_optimizers()["optimizer"]
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in module.head.parameters()}


def test_segment_gives_one_map_per_class_in_unit_range(toy_batch: dict) -> None:
    module = make_module(eval_chunk=7)  # chunks smaller than B x C
    module.set_classes(["circle", "square", "star"])
    maps = module.segment(toy_batch["images"])
    assert maps.shape == (6, 3, 64, 64) and 0 <= float(maps.min()) and float(maps.max()) <= 1


def test_unknown_switch_values_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="model.fss_source"):
        make_module(fss_source="both")
    with pytest.raises(ValueError, match="model.decoder_init"):
        make_module(decoder_init="imagenet")
    with pytest.raises(ValueError, match="model.decoder_ckpt: required"):
        make_module(decoder_init="clipseg")
