"""SynSegModule: a training step for each recipe, gradients, NaN naming, empty batches, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from synseg.lit.synseg_module import SynSegModule
from tests.modules import build_module

RECIPES = {
    "paper": [],
    "weak": ["model=synseg_weak_extras", "model.segmenter.head.prior=true"],
    "soft_warmup": ["model.loss.clamp_mode=soft", "model.align_warmup_steps=10"],
}


@pytest.fixture(scope="module")
def toy_batch(toy_folders: Path) -> dict:
    from tests.test_datamodule import collect, make_dm

    return collect(make_dm(toy_folders, "toy", world=1, workers=0, steps=1, batch=6))[0]


def make_module(*overrides: str) -> SynSegModule:
    model = next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), "synseg")
    return build_module(model, *[o for o in overrides if not o.startswith("model=")])


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_training_step_runs_and_trains_the_head(recipe: str, toy_batch: dict) -> None:
    module = make_module(*RECIPES[recipe])
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
    assert ckpt["state_dict"] and not any(k.startswith("segmenter.backbone.") for k in ckpt["state_dict"])
    assert ckpt["segmenter"]["kind"] == "synseg" and all(
        k.startswith("segmenter.head.") for k in ckpt["state_dict"]
    )
    module.on_load_checkpoint(ckpt)
    module.load_state_dict(ckpt["state_dict"])  # strict: the backbone keys were filled back in

    class _Trainer:
        max_steps = 10

    module._trainer = _Trainer()  # configure_optimizers reads max_steps only
    opt = module.configure_optimizers()["optimizer"]
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in module.head.parameters()}


def test_unknown_switch_values_are_clear_errors() -> None:
    with pytest.raises(Exception, match="model.fss_source: 'both'; expected conditioned or frozen"):
        make_module("model.fss_source=both")
    with pytest.raises(Exception, match="model.decoder_init: 'imagenet'; expected random or clipseg"):
        make_module("model.decoder_init=imagenet")
    with pytest.raises(Exception, match="model.decoder_ckpt: required"):
        make_module("model.decoder_init=clipseg", "model.decoder_ckpt=null")
    with pytest.raises(Exception, match="named align, cont, back, sep"):
        make_module("+model.loss.weights.edge=1")


def test_named_loss_weights_recombine_into_the_total(toy_batch: dict) -> None:
    """weights {align: a, cont: c, back: b, sep: s} give the weighted sum of the terms taken one at a time."""
    terms = ("align", "cont", "back", "sep")
    parts = []
    for term in terms:
        zero = [f"model.loss.weights.{t}={float(t == term)}" for t in terms]
        parts.append(make_module(*zero).training_step(toy_batch, 0).detach())
    weights = (1.0, 2.0, 0.5, 3.0)
    mixed = make_module(*[f"model.loss.weights.{t}={w}" for t, w in zip(terms, weights, strict=True)])
    total = mixed.training_step(toy_batch, 0).detach()
    torch.testing.assert_close(total, sum(w * p for w, p in zip(weights, parts, strict=True)))
