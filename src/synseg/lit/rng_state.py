"""`GlobalRngState`: the process-wide random states (torch CPU and CUDA, numpy, Python's `random`) travel in
the checkpoint and are restored when training resumes, so a resumed run draws what an uninterrupted one does.

It also undoes Lightning's re-seeding at the start of a DDP fit (`reset_seed()` in the strategy's setup, which
a single-process fit does not do): the states captured when the callback is made (after the model was built)
are put back in `setup("fit")`, so 1 process and W DDP processes draw the same random numbers.

Restored in `on_train_start`, i.e. after the training dataloader's iterator was made (its base-seed draw,
which an uninterrupted run made at step 0, must not shift the stream); nothing draws between a checkpoint
(written after validation) and the next training step."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


def capture_rng() -> dict[str, Any]:
    """The global random states as plain containers and tensors (weights-only loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },  # fmt: skip
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Sets the global random states captured by `capture_rng`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class GlobalRngState(L.Callback):
    """Saves the global random states with every checkpoint; restores them at the start of a resumed fit."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._at_start: dict[str, Any] | None = capture_rng()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self._at_start is not None:
            restore_rng(self._at_start)
            self._at_start = None

    def state_dict(self) -> dict[str, Any]:
        return capture_rng()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None:
            restore_rng(self._pending)
            self._pending = None
