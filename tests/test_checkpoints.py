"""Checkpoints that survive a kill and load safely: a process killed in the middle of a save leaves the
previous checkpoint loadable; every checkpoint loads weights-only; a file whose unpickling would run code is
refused in one line by every entry point that takes a checkpoint, and the code does not run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from synseg.checkpoint_files import load_checkpoint_file, plain_checkpoint
from synseg.errors import CheckpointError
from tests.conftest import ROOT

SAVER = """
import sys, torch
from synseg.checkpoint_files import atomic_torch_save
path = sys.argv[1]
atomic_torch_save({"version": 1, "w": torch.ones(10)}, path)
print("saved", flush=True)
v = 2
while True:  # 200 MB per save: long writes to be killed in
    atomic_torch_save({"version": v, "w": torch.full((50_000_000,), float(v))}, path)
    v += 1
"""


def test_kill_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"saved"
    deadline = time.time() + 120
    tmp = []
    while time.time() < deadline:
        tmp = [p for p in tmp_path.glob(".last.ckpt.*.tmp") if p.stat().st_size > 1_000_000]
        if tmp:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp, "the saver never started a second save"
    state = load_checkpoint_file(path)  # the last complete version, never half of one
    assert torch.equal(state["w"], torch.full_like(state["w"], float(state["version"])))
    partial = [p for p in tmp_path.glob(".last.ckpt.*.tmp")]
    assert partial and partial[0].stat().st_size < 200_000_000  # the kill landed in the middle of a write
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint_file(partial[0])


def test_config_objects_become_plain_data() -> None:
    import functools

    from omegaconf import OmegaConf

    state = {
        "hyper_parameters": {"backbone": OmegaConf.create({"model_name": "x", "layers": [1, 2]})},
        "optimizer": functools.partial(torch.optim.AdamW, lr=1e-3),
    }
    plain = plain_checkpoint(state)
    assert plain["hyper_parameters"]["backbone"] == {"model_name": "x", "layers": [1, 2]}
    assert plain["optimizer"] == {"_target_": "torch.optim.adamw.AdamW", "lr": 1e-3}


class Evil:
    """Unpickling this runs a shell command (what an untrusted .ckpt can do with weights_only=False)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture()
def evil_ckpt(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "synseg_meta": {}, "hyper_parameters": {}, "x": Evil(marker)}, path)
    return path, marker


def test_unsafe_checkpoint_is_refused_everywhere(evil_ckpt: tuple[Path, Path], tmp_path: Path) -> None:
    path, marker = evil_ckpt
    with pytest.raises(CheckpointError, match="refused: loading it needs arbitrary Python objects"):
        load_checkpoint_file(path)
    image = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    commands = {
        "eval": [sys.executable, "-m", "synseg.eval", f"ckpt={path}", f"paths.root_dir={tmp_path}"],
        "segment": [sys.executable, "-m", "synseg.segment", "--ckpt", str(path), "--image", str(image),
                    "--classes", "cat", "--out", str(tmp_path / "o.png")],
        "train": [sys.executable, "-m", "synseg.train", f"paths.root_dir={tmp_path}", "run_name=t",
                  "model=toyclip", f"ckpt_path={path}"],
    }  # fmt: skip
    for name, cmd in commands.items():
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, (name, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, name
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "refused" in last and str(path) in last, (name, last)
    assert not marker.exists()  # the payload never ran
