"""Logs what the data stream skipped: corrupt samples by reason and captions with no category."""

from __future__ import annotations

from collections import Counter
from typing import Any

import lightning as L


class DataStatsCallback(L.Callback):
    """Sums the per-batch skip counts the `CaptionStream` attaches and logs running totals (`data/...`)."""

    def __init__(self) -> None:
        self.skipped: Counter = Counter()
        self.no_category = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not isinstance(batch, dict):
            return
        self.skipped.update(batch.get("skipped", {}))
        self.no_category += int(batch.get("no_category", 0))
        stats = {f"data/skipped/{k}": float(v) for k, v in self.skipped.items()}
        stats["data/skipped_total"] = float(sum(self.skipped.values()))
        stats["data/no_category_total"] = float(self.no_category)
        pl_module.log_dict(stats)  # this rank's totals
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "skipped_total"):
            dm.skipped_total = dict(self.skipped)
