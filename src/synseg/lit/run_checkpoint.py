"""`RunCheckpoint`: when a run writes `checkpoints/last.ckpt`.

After every validation (so the checkpoint holds the threshold val just selected, written once, never patched
afterwards), every `every_n_train_steps` steps when the run has no validation, and at the end of training if
the last step was not saved yet. Lightning 2.6's ModelCheckpoint writes `last.ckpt` only together with a
top-k checkpoint; this subclass keeps its file handling (and our atomic checkpoint plugin) and fixes when."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that always keeps `last.ckpt` current at the moments above. A run whose module does
    not log the monitored metric (the stand-in CLIP logs val/top1, not a segmentation mIoU) keeps no
    best.ckpt instead of failing."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.current_score = state_dict.get("current_score")  # Lightning leaves it out: a resume keeps it

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        if self.monitor is not None and self.monitor not in monitor_candidates:
            if not getattr(self, "_warned_monitor", False):
                log.warning("no %s logged: this run keeps last.ckpt only (no best.ckpt)", self.monitor)
                self._warned_monitor = True
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _save_last_now(self, trainer: L.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)  # top-k (best) checkpoints, when configured
        self._save_last_now(trainer)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        every = self._every_n_train_steps
        if every >= 1 and trainer.global_step % every == 0 and not trainer.num_val_batches:
            self._save_last_now(trainer)  # no validation: step-based checkpoints

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_last_now(trainer)  # the end of training (one epoch of total_steps), if not saved yet
