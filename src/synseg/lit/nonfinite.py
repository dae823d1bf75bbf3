"""`NonFiniteGuard`: the same handling of non-finite training in every module.

A step whose loss or gradient is NaN or inf is skipped (its gradients are dropped, so the optimiser changes
nothing) and counted (`train/nonfinite_steps`); after `max_consecutive` such steps in a row the run stops
with one line naming the loss term and the step, and the last good checkpoint stays the last one written.
The check runs after backward, on gradients DDP has already averaged, so every rank decides the same."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from synseg.errors import NonFiniteError


def nonfinite_terms(metrics: dict[str, Any]) -> list[str]:
    """Names of the logged `train/loss...` values that are NaN or inf."""
    bad = []
    for name, value in metrics.items():
        if name.startswith("train/loss") and not math.isfinite(float(value)):
            bad.append(name)
    return sorted(bad)


class NonFiniteGuard(L.Callback):
    """Skips and counts steps with a non-finite loss or gradient; stops after `max_consecutive` in a row."""

    def __init__(self, max_consecutive: int = 10) -> None:
        if max_consecutive < 1:
            raise ValueError(f"callbacks.nonfinite.max_consecutive: {max_consecutive}; expected >= 1")
        self.max_consecutive = max_consecutive
        self.skipped = 0
        self.consecutive = 0

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
        self.consecutive = int(state_dict.get("consecutive", 0))

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        finite = all(bool(torch.isfinite(p.grad).all()) for p in params)
        if finite:
            self.consecutive = 0
        else:
            for p in params:  # no update at all this step (AdamW skips parameters without a gradient)
                p.grad = None
            self.skipped += 1
            self.consecutive += 1
        pl_module.log("train/nonfinite_steps", float(self.skipped), on_step=True, on_epoch=False)
        if self.consecutive >= self.max_consecutive:
            terms = nonfinite_terms(trainer.callback_metrics) or ["a gradient (the loss terms were finite)"]
            ckpt = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
            raise NonFiniteError(
                f"training stopped at step {trainer.global_step + 1}: {self.consecutive} consecutive steps "
                f"with a non-finite loss or gradient (last one: {', '.join(terms)}); the last good "
                f"checkpoint is {ckpt or 'none'}"
            )
