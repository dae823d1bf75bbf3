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
from tests.wandb_records import run_summary

TINY = [
    "debug=limit",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.toy.n_val=8",
    "data.toy.n_test=8",
    "data.eval_batch_size=8",
    "clip.pretrained=null",
]


def train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    tiny = [o for o in TINY if not any(o.split("=")[0] == x.split("=")[0] for x in overrides)]
    cmd = [sys.executable, "-m", "synseg.train", f"paths.root_dir={tmp_path}", *tiny, *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_synseg_run_writes_its_run_folder(tmp_path: Path) -> None:
    from synseg.models.toyclip import build_open_clip

    clip = tmp_path / "clip.pt"  # a random stand-in CLIP, but in a file: the run and `make eval` share it
    torch.manual_seed(0)
    torch.save(build_open_clip("toyclip-vit-p8c").state_dict(), clip)
    done = train(
        tmp_path,
        "model=synseg",
        "model.decoder_init=random",
        "run_name=tiny",
        f"clip.pretrained={clip}",
        "logger.wandb.log_model=true",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "logs" / "train" / "tiny"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 20 and metrics["test/toy/n_images"] == 8
    assert {
        "test/toy/act_in",
        "test/toy/act_bg",
        "test/toy/act_absent",
        "reference/all_background",
        "reference/patch_grid_ceiling",
        "test/toy/per_class/circle",
        "val/toy/iou/circle",
    } <= set(metrics)
    assert "segmenter:" in (run / "config.yaml").read_text()
    # the test scored best.ckpt (validations at steps 10 and 20), and says so
    assert metrics["test/checkpoint"] == "best" and metrics["best/step"] in (10, 20)
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert best["global_step"] == metrics["best/step"] and last["global_step"] == 20
    assert not any(k.startswith("segmenter.backbone.") for k in last["state_dict"])
    config = best["segmenter"]  # what Segmenter.load rebuilds the model from
    assert config["kind"] == "synseg" and config["image_size"] == 64
    # the test's threshold is the one val chose for the best weights, written with that checkpoint at once
    assert config["threshold"] == pytest.approx(metrics["test/toy/threshold"], abs=1e-6)
    # the dashboard: job type, tags, val mIoU at the val-selected threshold with it beside, per-class IoU over
    # time, the test's per-class table, and the exported model as an artifact
    (run_file,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    logged = run_summary(run_file)
    assert logged["job_type"] == "train" and logged["tags"] == ["synseg", "toy", "captions"]
    assert {"val/toy/mIoU", "val/toy/threshold", "val/toy/iou/circle", "train/loss/sep"} <= logged[
        "history_keys"
    ]
    assert "test/toy/per_class_iou" in logged["tables"] and "val/toy/examples" in logged["images"]
    assert ("tiny-model", "model") in logged["artifacts"]
    assert "reference levels" in done.stdout and "maps inverted" in done.stdout
    # `make eval` on the run's export reproduces its own test numbers (one loader, the same protocol)
    evaluated = subprocess.run(
        [sys.executable, "-m", "synseg.eval", f"ckpt={run / 'model.synseg'}", f"paths.root_dir={tmp_path}",
         f"data_root={tmp_path / 'data' / 'toy' / 'test'}", "progress=false", "run_name=check"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    again = json.loads((tmp_path / "logs" / "eval" / "check" / "metrics.json").read_text())
    assert again["toy/mIoU"] == pytest.approx(metrics["test/toy/mIoU"], abs=1e-6)
    assert again["toy/threshold"] == pytest.approx(metrics["test/toy/threshold"], abs=1e-6)


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
