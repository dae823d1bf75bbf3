"""`python -m synseg.eval` end to end on tiny toy folders: maskclip and a tiny SynSeg checkpoint, the
metrics / protocol / CSV / prediction files, skipped images, the toy defaults taken from the checkpoint, and
one clear line with a non-zero exit on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from synseg.eval import evaluate, main
from synseg.evaluation.loading import CONFIG_DIR, LoadError
from tests.conftest import ROOT
from tests.tiny_checkpoint import RANDOM_BACKBONE, save_tiny_checkpoint
from tests.wandb_records import run_summary


@pytest.fixture(scope="module")
def toy_test(toy_folders: Path) -> Path:
    return toy_folders / "toy" / "test"  # 24 images, 64 px


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Val-selected threshold 0.35 and a training image size of 32 (not the backbone's 64, so the test sees
    where the toy default comes from)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("run") / "tiny-run" / "checkpoints" / "last.ckpt")


def eval_cfg(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("eval", overrides=[f"paths.root_dir={tmp_path}", "progress=false", *overrides])
    cfg.paths.output_dir = str(tmp_path / "logs" / "eval" / cfg.run_name)
    return cfg


def run_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "synseg.eval",
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
        "progress=false",
        *args,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_maskclip_end_to_end(tmp_path: Path, toy_test: Path) -> None:
    pred = tmp_path / "pred"
    done = run_cli(
        "method=maskclip",
        RANDOM_BACKBONE,
        "datasets=toy",  # the default is "toy toy_ood"; data_root points at one toy folder
        f"data_root={toy_test}",
        f"paths.root_dir={tmp_path}",
        f"save_pred={pred}",
        "batch_size=10",  # 24 images: batches of 10, 10, 4
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "logs" / "eval" / "maskclip"  # run named after the model
    metrics = json.loads((run / "metrics.json").read_text())
    classes = (toy_test / "classes.txt").read_text().split()
    assert {"toy/mIoU", "toy/skipped", "toy/n_images", *(f"toy/per_class/{c}" for c in classes)} <= set(
        metrics
    )
    assert metrics["toy/n_images"] == 24 and metrics["toy/skipped"] == 0
    ious = [v for k, v in metrics.items() if k.endswith("mIoU") or "/per_class/" in k]
    assert all(v is None or 0.0 <= v <= 1.0 for v in ious) and metrics["toy/mIoU"] is not None
    protocol = json.loads((run / "protocol.json").read_text())["datasets"]["toy"]
    assert (protocol["short_side"], protocol["window"]) == (64, 64)  # the backbone's input size
    assert protocol["threshold"] == 0.5 and protocol["threshold_source"] == "default"
    assert "method: maskclip" in (run / "config.yaml").read_text()
    (wandb_run,) = (run / "wandb").glob("offline-run-*/run-*.wandb")  # the eval on the dashboard
    logged = run_summary(wandb_run)
    assert logged["job_type"] == "eval" and logged["tables"] == ["eval/toy/per_class_iou"]
    assert "eval/toy/mIoU" in logged["history_keys"]
    rows = (run / "toy_per_class.csv").read_text().splitlines()
    assert rows[0] == "class,IoU" and len(rows) == 1 + len(classes)
    assert "== toy: mIoU" in done.stdout and "protocol: short side 64" in done.stdout
    # One label PNG per image, named like its mask, label ids within the classes
    masks = sorted(p.name for p in (toy_test / "masks").glob("*.png"))
    saved = sorted(p.name for p in (pred / "toy").glob("*.png"))
    assert saved == masks
    labels = np.asarray(Image.open(pred / "toy" / saved[0]))
    assert labels.dtype == np.uint8 and labels.shape == (64, 64) and labels.max() < len(classes)


def test_checkpoint_end_to_end_sets_the_toy_resolution_and_threshold(
    tmp_path: Path, toy_test: Path, tiny_ckpt: Path
) -> None:
    done = run_cli(f"ckpt={tiny_ckpt}", f"data_root={toy_test}", f"paths.root_dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "logs" / "eval" / "tiny-run"  # named after the checkpoint's run folder
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["toy/n_images"] == 24 and 0.0 <= metrics["toy/mIoU"] <= 1.0
    assert metrics["toy/threshold"] == 0.35
    protocol = json.loads((run / "protocol.json").read_text())
    toy = protocol["datasets"]["toy"]
    assert (toy["short_side"], toy["window"], toy["stride"]) == (32, 32, 16)
    assert toy["threshold_source"] == "checkpoint val-selected"
    assert protocol["source"]["segmenter"]["kind"] == "synseg"
    assert "bg threshold 0.35 (checkpoint val-selected)" in done.stdout


def test_overrides_win_over_the_checkpoint_defaults(tmp_path: Path, toy_test: Path, tiny_ckpt: Path) -> None:
    over = ("protocol.resolution=64", "protocol.threshold=0.9", "protocol.templates=imagenet7")
    cfg = eval_cfg(tmp_path, f"ckpt={tiny_ckpt}", f"data_root={toy_test}", *over)
    assert cfg.run_name == "tiny-run"
    metrics = evaluate(cfg)
    toy = json.loads((Path(cfg.paths.output_dir) / "protocol.json").read_text())["datasets"]["toy"]
    assert metrics["toy/threshold"] == 0.9 and toy["window"] == 64 and len(toy["templates"]) == 7


def test_undecodable_images_are_counted_not_fatal(tmp_path: Path, toy_test: Path) -> None:
    folder = tmp_path / "mine"
    shutil.copytree(toy_test, folder)
    (folder / "images" / "000003.png").write_bytes(b"not a png")
    # a second image size in the same folder: batched apart from the 64 px ones
    Image.open(folder / "images" / "000004.png").resize((80, 48)).save(folder / "images" / "000004.png")
    Image.open(folder / "masks" / "000004.png").resize((80, 48), Image.NEAREST).save(
        folder / "masks" / "000004.png"
    )
    cfg = eval_cfg(
        tmp_path,
        "method=maskclip",
        RANDOM_BACKBONE,
        "datasets=[folder]",
        f"data_root={folder}",
        f"save_pred={tmp_path / 'pred'}",
    )
    metrics = evaluate(cfg)
    assert metrics["folder/skipped"] == 1 and metrics["folder/n_images"] == 23
    assert np.asarray(Image.open(tmp_path / "pred" / "folder" / "000004.png")).shape == (48, 80)
    assert not (tmp_path / "pred" / "folder" / "000003.png").exists()


def test_score_budget_splits_batches_without_changing_the_result(tmp_path: Path, toy_test: Path) -> None:
    base = ("method=maskclip", RANDOM_BACKBONE, f"data_root={toy_test}", "protocol.threshold=0.11")
    torch.manual_seed(0)  # the same random backbone twice
    whole = evaluate(eval_cfg(tmp_path, *base, "run_name=whole"))
    torch.manual_seed(0)
    # 10 classes x 64 x 64 = 40,960 values per image: a budget of 100,000 scores 2 images per step
    split = evaluate(eval_cfg(tmp_path, *base, "run_name=split", "score_budget=100000"))
    per_class = [v for k, v in whole.items() if "/per_class/" in k and k != "toy/per_class/background"]
    assert any(v for v in per_class), "a degenerate prediction would not test the split"
    assert split["toy/n_images"] == whole["toy/n_images"] == 24
    assert split["toy/mIoU"] == pytest.approx(whole["toy/mIoU"], abs=1e-6)


def test_bad_input_gives_one_clear_line(
    tmp_path: Path, toy_test: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "synseg.eval",
        f"ckpt={tmp_path / 'missing.ckpt'}",
        f"paths.root_dir={tmp_path}",
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
    ]
    with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit) as exit_:
        mp.setattr(sys, "argv", argv)
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: CKPT=") and "no such file" in err[-1]
    with pytest.raises(LoadError, match="unknown dataset 'nope'; known: voc21"):
        evaluate(eval_cfg(tmp_path, "method=maskclip", RANDOM_BACKBONE, "datasets=nope"))
    with pytest.raises(LoadError, match="(?s)voc21: dataset missing.*VOCdevkit"):
        evaluate(
            eval_cfg(tmp_path, "method=maskclip", RANDOM_BACKBONE, "datasets=voc21", f"data_root={tmp_path}")
        )
    with pytest.raises(LoadError, match="protocol for toy: .*templates: 'fancy'"):
        evaluate(
            eval_cfg(
                tmp_path,
                "method=maskclip",
                RANDOM_BACKBONE,
                f"data_root={toy_test}",
                "protocol.templates=fancy",
            )
        )
    bogus = tmp_path / "bogus.ckpt"
    torch.save({"state_dict": {}}, bogus)
    with pytest.raises(LoadError, match="not a checkpoint of a segmentation model"):
        evaluate(eval_cfg(tmp_path, f"ckpt={bogus}", f"data_root={toy_test}"))
    with pytest.raises(LoadError, match="exactly one of CKPT"):
        evaluate(eval_cfg(tmp_path, "run_name=x"))
    with pytest.raises(LoadError, match="MODEL=synseg: not a training-free model"):
        evaluate(eval_cfg(tmp_path, "method=synseg", RANDOM_BACKBONE, "run_name=x"))


def test_make_eval_needs_a_ckpt_or_a_training_free_model() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "eval"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "CKPT=" in done.stderr and "MODEL=maskclip" in done.stderr


def test_dense_pretrained_checkpoint_loads_without_its_init_file(tmp_path: Path) -> None:
    """A `MODEL=synseg` checkpoint names its dense-pretrained init by a relative path; loading it elsewhere
    (a notebook's folder, another machine) must not need that file: the trained head is in the state dict."""
    from synseg.models import Segmenter

    ckpt = save_tiny_checkpoint(tmp_path / "last.ckpt", decoder_ckpt="no/such/synseg_head_dense.pt")
    segmenter = Segmenter.load(ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    for name, value in segmenter.head.state_dict().items():
        torch.testing.assert_close(value, state[f"segmenter.head.{name}"], msg=name)
    assert segmenter.threshold == pytest.approx(0.35) and segmenter.image_size == 32
