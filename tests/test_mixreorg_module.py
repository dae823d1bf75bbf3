"""MixReorgModule: a training step trains every head parameter (backbone frozen), the loss is the weighted
sum of its terms, the mixing is reproducible per step, and inference runs the original branch only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from synseg.lit.mixreorg_module import MIXREORG_TERMS, MixReorgModule
from tests.modules import build_module


@pytest.fixture(scope="module")
def toy_batch(toy_folders: Path) -> dict:
    from tests.test_datamodule import collect, make_dm

    return collect(make_dm(toy_folders, "toy", world=1, workers=0, steps=1, batch=6))[0]


def make_module(*overrides: str) -> MixReorgModule:
    return build_module("mixreorg", *overrides)


@pytest.mark.parametrize("progressive", [True, False])
def test_training_step_gives_every_head_parameter_a_gradient(progressive: bool, toy_batch: dict) -> None:
    module = make_module(f"model.segmenter.progressive={progressive}")
    loss = module.training_step(toy_batch, 0)
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    missing = [
        n
        for n, p in module.head.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.any()) and (progressive or n != "gates")
    ]
    assert not missing, missing[:5]
    assert all(p.grad is None for p in module.backbone.parameters())  # frozen
    assert (module.head.gates.grad is not None) == progressive


def test_loss_is_the_weighted_sum_of_its_terms(toy_batch: dict) -> None:
    """Weights {seg: 1, orig: 0, rest: 0}, {seg: 0, orig: 1, rest: 0} ... recombine into the (1, 2, 3)
    total."""
    parts = []
    for term in MIXREORG_TERMS:
        zero = [f"model.loss.weights.{t}={float(t == term)}" for t in MIXREORG_TERMS]
        parts.append(make_module(*zero).training_step(toy_batch, 0).detach())
    weights = ["model.loss.weights.seg=1", "model.loss.weights.orig=2", "model.loss.weights.rest=3"]
    total = make_module(*weights).training_step(toy_batch, 0).detach()
    torch.testing.assert_close(total, parts[0] + 2 * parts[1] + 3 * parts[2])
    # at init the mixed segmentation is a guess among M=2 captions: CE close to log 2
    assert 0.3 < float(parts[0]) < 1.5
    with pytest.raises(Exception, match="named seg, orig, rest"):
        make_module("~model.loss.weights.rest")
    assert MIXREORG_TERMS == ("seg", "orig", "rest")


def test_mixing_layout_is_seeded_by_step_and_is_a_slice_of_the_global_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import synseg.lit.mixreorg_module as mm

    grid = (4, 4)
    module = make_module()
    steps = {}
    for step in (0, 1, 7):
        monkeypatch.setattr(MixReorgModule, "global_step", property(lambda self, s=step: s))
        steps[step] = module.mix_layout(6, grid)
        assert torch.equal(steps[step], make_module().mix_layout(6, grid))  # a function of (mix_seed, step)
    assert not torch.equal(steps[0], steps[1]) and not torch.equal(steps[1], steps[7])
    assert not torch.equal(make_module("model.mix_seed=1").mix_layout(6, grid), steps[7])
    # Under DDP (2 ranks x 6 images) rank r mixes rows r*6.. of the 12-image layout, in its own indices.
    full = module.mix_layout(12, grid)
    for rank in (0, 1):
        monkeypatch.setattr(mm, "rank_and_world", lambda r=rank: (r, 2))
        torch.testing.assert_close(module.mix_layout(6, grid), full[rank * 6 : (rank + 1) * 6] - rank * 6)


def test_group_size_must_mix(toy_batch: dict) -> None:
    with pytest.raises(Exception, match="group_size"):
        make_module("model.group_size=1")
    module = make_module(
        "model.group_size=4"
    )  # 6 images: one group of 4, the tail of 2 in the original branch
    assert torch.isfinite(module.training_step(toy_batch, 0))
