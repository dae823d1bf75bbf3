"""The optimiser and learning-rate schedule of every LightningModule: the configured optimiser (a Hydra
`_partial_` factory, AdamW when none) over the given parameters or groups, linear warm-up then cosine decay
to 0 at `trainer.max_steps`, stepped every optimiser step."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warm-up to 1 over `warmup` steps, then cosine to 0 at `total`."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def optimizer_config(
    params: Iterable[Any], factory: Callable[..., torch.optim.Optimizer] | None, warmup_steps: int, total: int
) -> dict[str, Any]:
    """`configure_optimizers`' return value: the optimiser and its per-step warm-up + cosine schedule."""
    opt = factory(params=params) if factory else torch.optim.AdamW(params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup_steps, max(1, total)))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
