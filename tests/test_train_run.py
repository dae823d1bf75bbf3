"""`python -m synseg.train` end to end on a tiny budget: run folder with resolved config, metrics.json
(test mIoU, per-class IoU, diagnostics, references), last.ckpt without the frozen backbone, wandb offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

TINY = [
    "debug=limit",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.toy.n_val=8",
    "data.toy.n_test=8",
    "data.eval_batch_size=8",
    "model.backbone.pretrained=null",
]


def train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "synseg.train", f"paths.root_dir={tmp_path}", *TINY, *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_synseg_run_writes_its_run_folder(tmp_path: Path) -> None:
    done = train(tmp_path, "model=synseg", "model.decoder_init=random", "run_name=tiny")
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "logs" / "train" / "tiny"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test/toy/mIoU"] <= 1.0 and metrics["global_step"] == 20
    assert {
        "test/toy/act_in",
        "test/toy/act_bg",
        "test/toy/act_absent",
        "reference/all_background",
        "reference/patch_grid_ceiling",
        "test/toy/per_class/circle",
    } <= set(metrics)
    assert "model:" in (run / "config.yaml").read_text()
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not any(k.startswith("backbone.") for k in ckpt["state_dict"])
    meta = ckpt["synseg_meta"]  # what `make eval` rebuilds the model from
    assert meta["module"] == "synseg.lit.synseg_module.SynSegModule" and meta["image_size"] == 64
    # the val-selected threshold the test used (logged as float32), written with the checkpoint at once
    assert meta["threshold"] == pytest.approx(metrics["test/toy/threshold"], abs=1e-6)
    assert list((run / "wandb").glob("offline-run-*")), "wandb did not log offline"
    assert "reference levels" in done.stdout and "maps inverted" in done.stdout


def test_training_free_model_only_evaluates(tmp_path: Path) -> None:
    done = train(tmp_path, "model=maskclip", "run_name=mc")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "logs" / "train" / "mc" / "metrics.json").read_text())
    assert metrics["global_step"] == 0 and "test/toy/mIoU" in metrics and "val/toy/mIoU" in metrics


def test_unknown_model_lists_the_registered_ones() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "train", "MODEL=nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "MODEL=nope: unknown model; registered:" in done.stderr and "synseg" in done.stderr
