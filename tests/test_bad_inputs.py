"""One line for every bad input, no traceback wall: each case runs the real entry point as a user would and
checks the exit status, that stderr ends in one `error: ...` line naming the key or file and what was
expected, and that no traceback was printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import ROOT

TRAIN = [sys.executable, "-m", "synseg.train", "run_name=bad"]
EVAL = [
    sys.executable,
    "-m",
    "synseg.eval",
    "method=maskclip",
    "clip.pretrained=null",
    "progress=false",
]
SYNSEG = ["model=synseg", "model.decoder_init=random", "clip.pretrained=null"]


def folder_set(root: Path, mask: np.ndarray) -> Path:
    """A `folder`-layout set with one 16x16 image and the given mask."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\ncat\ndog\n")
    Image.new("RGB", (16, 16)).save(root / "images" / "a.png")
    Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / "a.png")
    return root


def fixtures(tmp: Path) -> dict[str, Path]:
    (tmp / "garbage.ckpt").write_bytes(b"not a checkpoint at all")
    torch.save(
        {
            "global_step": 1,
            "hyper_parameters": {"segmenter": {"kind": "synseg", "backbone": {"model_name": "ViT-B-16"}}},
        },
        tmp / "vit.ckpt",
    )
    return {
        "garbage": tmp / "garbage.ckpt",
        "vit": tmp / "vit.ckpt",
        "small_mask": folder_set(tmp / "small_mask", np.zeros((10, 10))),
        "bad_label": folder_set(tmp / "bad_label", np.full((16, 16), 7)),
        "empty": tmp / "empty",
    }


# (name, command builder, expected exit status, text the error line must contain)
CASES = [
    ("loss weights", lambda p: [*TRAIN, *SYNSEG, "+model.loss.weights.edge=1"], 2,
     "; expected one weight per term, named align, cont, back, sep (e.g. model.loss.weights.sep=0)"),
    ("learning rate", lambda p: [*TRAIN, "model=toyclip", "model.optimizer.lr=0"], 2,
     "model.optimizer.lr: 0; expected a number in (0, 10]"),
    ("batch size", lambda p: [*TRAIN, "model=toyclip", "data.batch_size=0"], 2,
     "data.batch_size: 0; expected an integer >= 1"),
    ("batch vs mixing group", lambda p: [*TRAIN, "model=mixreorg", "clip.pretrained=null",
                                         "data.batch_size=1"], 2, "cannot fill one mixing group"),
    ("total steps", lambda p: [*TRAIN, "model=toyclip", "total_steps=0"], 2,
     "total_steps: 0; expected an integer >= 1"),
    ("threshold range", lambda p: [*TRAIN, *SYNSEG, "callbacks.seg_eval.threshold=1.5"], 2,
     "callbacks.seg_eval.threshold: 1.5; expected a number in [0, 1]"),
    ("missing weights", lambda p: [*TRAIN, "model=synseg", "model.decoder_init=random",
                                   "clip.pretrained=/nope/clip.pt"], 2,
     "model.segmenter.backbone.pretrained: /nope/clip.pt does not exist; "
     "build the stand-in CLIP with `make toyclip`"),
    ("resume without checkpoint", lambda p: [*TRAIN, "model=toyclip", "resume=true"], 2,
     "RESUME=1: "),
    ("unreadable checkpoint", lambda p: [*TRAIN, "model=toyclip", f"ckpt_path={p['garbage']}"], 2,
     "not a readable checkpoint"),
    ("checkpoint of another backbone", lambda p: [*TRAIN, *SYNSEG, f"ckpt_path={p['vit']}"], 2,
     "trained with backbone ViT-B-16, this run uses toyclip-vit-p8c"),
    ("benchmark missing under DATA_ROOT", lambda p: [*TRAIN, *SYNSEG, "val=benchmark",
                                                    f"val.data_root={p['empty']}"], 2,
     "val: voc20 (val) is not usable under"),
    ("eval mask of the wrong size", lambda p: [*EVAL, "datasets=folder", f"data_root={p['small_mask']}"], 2,
     "mask size 10x10 (WxH) differs from its image a.png 16x16"),
    ("eval label out of range", lambda p: [*EVAL, "datasets=folder", f"data_root={p['bad_label']}"], 2,
     "label value(s) [7] outside 0..2"),
    ("eval unknown dataset", lambda p: [*EVAL, "datasets=vocc"], 2, "DATASETS: unknown dataset 'vocc'"),
    ("eval unreadable checkpoint", lambda p: [sys.executable, "-m", "synseg.eval", f"ckpt={p['garbage']}"], 2,
     "not a readable checkpoint"),
]  # fmt: skip


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return fixtures(tmp_path_factory.mktemp("bad_inputs"))


@pytest.mark.parametrize(("name", "build", "status", "text"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line(
    name: str, build, status: int, text: str, paths: dict, tmp_path: Path
) -> None:
    cmd = [*build(paths), f"paths.root_dir={tmp_path}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == status, (name, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and text in lines[-1], lines[-3:]
    assert sum(text in ln for ln in lines) == 1  # said once, on one line
    assert not (tmp_path / "logs" / "train" / "bad" / "checkpoints").exists()  # nothing started
