"""Logs what the data stream skipped and converted, summed over ranks, and keeps the totals across resumes.

Metrics (running totals of the whole run, every rank's samples): `data/skipped/<reason>` for every reason
of `records.SKIP_REASONS` (zeros included), `data/converted/<kind>` for `records.CONVERSIONS`,
`data/skipped_total` and `data/no_category_total`. They end up in `trainer.callback_metrics`, hence in the
run's `metrics.json`. Under DDP every rank logs the same fixed keys after every batch; the sum over ranks
is one `strategy.reduce` of a single int64 vector (what `sync_dist=True, reduce_fx="sum"` would compute,
with one collective instead of one per key)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from synseg.data.train.records import CONVERSIONS, SKIP_REASONS

KEYS = (
    *(f"data/skipped/{r}" for r in SKIP_REASONS),
    *(f"data/converted/{c}" for c in CONVERSIONS),
    "data/skipped_total",
    "data/no_category_total",
)


class DataStatsCallback(L.Callback):
    """Sums the per-batch counts the `CaptionStream` attaches (`skipped`, `converted`, `no_category`)."""

    def __init__(self) -> None:
        self.local = dict.fromkeys(KEYS, 0)  # this rank's counts since this process started
        self.restored = dict.fromkeys(KEYS, 0)  # all ranks' totals from a resumed checkpoint
        self.totals = dict.fromkeys(KEYS, 0)  # all ranks' totals at the last batch (what is saved)

    def _count(self, batch: dict[str, Any]) -> None:
        skipped = {k: int(v) for k, v in (batch.get("skipped") or {}).items()}
        for reason, n in skipped.items():
            if f"data/skipped/{reason}" in self.local:
                self.local[f"data/skipped/{reason}"] += n
        for kind, n in (batch.get("converted") or {}).items():
            if f"data/converted/{kind}" in self.local:
                self.local[f"data/converted/{kind}"] += int(n)
        self.local["data/skipped_total"] += sum(skipped.values())
        self.local["data/no_category_total"] += int(batch.get("no_category", 0))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if isinstance(batch, dict):
            self._count(batch)
        # The restored totals are added on rank 0 only, so the sum over ranks counts them once.
        base = self.restored if trainer.global_rank == 0 else dict.fromkeys(KEYS, 0)
        mine = torch.tensor(
            [self.local[k] + base[k] for k in KEYS], dtype=torch.long, device=pl_module.device
        )
        summed = trainer.strategy.reduce(mine, reduce_op="sum")  # every rank, every batch: same collective
        self.totals = {k: int(v) for k, v in zip(KEYS, summed.tolist(), strict=True)}
        pl_module.log_dict({k: float(v) for k, v in self.totals.items()}, on_step=True, on_epoch=False)

    def state_dict(self) -> dict[str, Any]:
        return {"totals": dict(self.totals)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("totals", {})
        self.restored = {k: int(saved.get(k, 0)) for k in KEYS}
        self.totals = dict(self.restored)
