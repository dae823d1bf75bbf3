"""Non-finite training is handled the same way in every module (NonFiniteGuard): a step with a NaN loss or
gradient changes no weight and is counted; after `max_consecutive` in a row the run stops with one line
naming the loss terms and the step, and the last checkpoint written stays the last good one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from synseg.errors import NonFiniteError
from synseg.lit.checkpoint_io import AtomicCheckpointIO
from synseg.lit.nonfinite import NonFiniteGuard
from synseg.lit.run_checkpoint import RunCheckpoint
from tests.conftest import ROOT

MODELS = {
    "synseg": ["model=synseg", "model.decoder_init=random", "clip.pretrained=null"],
    "mixreorg": ["model=mixreorg", "clip.pretrained=null"],
    "toyclip": ["model=toyclip"],
}


class PoisonSteps(L.Callback):
    """Turns the images of the given (0-based) steps into NaN and records the trainable weights after each."""

    def __init__(self, steps: set[int]) -> None:
        self.steps, self.after = steps, []

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int
    ) -> None:
        if trainer.global_step in self.steps:
            batch["images"].fill_(float("nan"))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.after.append({n: p.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad})


def build(model: str, tmp_path: Path, steps: int) -> tuple[Any, Any]:
    import hydra

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        tiny = ["data.batch_size=4", "data.num_workers=0", "val=none", f"total_steps={steps}"]
        cfg = compose("train", overrides=[*MODELS[model], f"paths.root_dir={tmp_path}", *tiny])
    torch.manual_seed(0)
    return hydra.utils.instantiate(cfg.data), hydra.utils.instantiate(cfg.model)


@pytest.mark.parametrize("model", list(MODELS))
def test_nonfinite_steps_are_skipped_and_counted(model: str, tmp_path: Path) -> None:
    datamodule, module = build(model, tmp_path, steps=5)
    poison = PoisonSteps({2, 3})
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        gradient_clip_val=1.0,
        callbacks=[poison, NonFiniteGuard(max_consecutive=3)],
    )
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 5 and float(trainer.callback_metrics["train/nonfinite_steps"]) == 2
    w = poison.after
    for step in (2, 3):  # no update at all in a skipped step ...
        assert all(torch.equal(w[step][k], w[1][k]) for k in w[1]), step
    assert any(not torch.equal(w[4][k], w[3][k]) for k in w[1])  # ... and training goes on after them
    assert all(torch.isfinite(v).all() for v in w[4].values())


def test_too_many_in_a_row_stop_the_run_keeping_the_last_good_checkpoint(tmp_path: Path) -> None:
    datamodule, module = build("synseg", tmp_path, steps=10)
    ckpt_dir = tmp_path / "checkpoints"
    poison = PoisonSteps(set(range(4, 10)))
    trainer = L.Trainer(
        accelerator="cpu", max_steps=10, logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, plugins=[AtomicCheckpointIO()],
        callbacks=[poison, NonFiniteGuard(max_consecutive=3),
                   RunCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, every_n_train_steps=2)],
    )  # fmt: skip
    with pytest.raises(NonFiniteError) as err:
        trainer.fit(module, datamodule=datamodule)
    message = str(err.value)
    assert "\n" not in message and "3 consecutive steps" in message and "step 7" in message
    assert "train/loss/align" in message and "last.ckpt" in message
    state = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    # The checkpoint of step 6 holds the weights of the last real update (step 4): skipped steps changed
    # nothing, and the run stopped before writing anything after its third non-finite step.
    assert state["global_step"] == 6
    good = poison.after[3]
    assert all(torch.equal(state["state_dict"][k], good[k]) for k in good if k in state["state_dict"])
