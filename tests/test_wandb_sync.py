"""`make wandb-sync` finds the offline wandb runs of logs/train and logs/compare with the pinned wandb (a dry
run here: no network)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT


def offline_run(folder: Path, name: str) -> Path:
    import wandb

    folder.mkdir(parents=True)
    run = wandb.init(mode="offline", dir=str(folder), project="synseg-lab", name=name, id=f"{name}-00000000")
    run.log({"x": 1.0})
    run.finish()
    return next((folder / "wandb").glob("offline-run-*"))


def test_wandb_sync_lists_train_and_compare_runs(tmp_path: Path) -> None:
    train = offline_run(tmp_path / "train" / "a", "a")
    compare = offline_run(tmp_path / "compare" / "n" / "synseg-s0", "n-synseg-s0")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    done = subprocess.run(
        ["make", "--no-print-directory", "wandb-sync", f"LOG_DIR={tmp_path}", "DRY_RUN=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Would sync 2 run(s)" in out and train.name in out and compare.name in out
    empty = subprocess.run(
        ["make", "--no-print-directory", "wandb-sync", f"LOG_DIR={tmp_path / 'none'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert empty.returncode == 0 and "no offline runs" in empty.stdout
