"""A callback that sleeps after every training step, so a test can kill a tiny run between two steps."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class Throttle(L.Callback):
    """Sleeps `seconds` after each training batch (only slows the run; changes no number)."""

    def __init__(self, seconds: float = 0.2) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        time.sleep(self.seconds)
