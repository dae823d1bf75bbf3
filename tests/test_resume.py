"""Exact resume, as users run it: a real `python -m synseg.train` process is SIGKILLed at a random moment
after its first checkpoint, resumed with `resume=true` (what `make train ... RESUME=1` passes), and every
tensor of its final checkpoint (weights, optimiser and scheduler states) equals an uninterrupted run's, bit
for bit, for every trained model. The CSV log continues (rows before the kill kept, none doubled) and the
wandb run is the same run resumed, not a second one."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

STEPS, EVERY = 12, 4
TINY = [
    "data.toy.n_val=4",
    "data.toy.n_test=4",
    "data.batch_size=4",
    "data.num_workers=0",
    f"total_steps={STEPS}",
    f"trainer.val_check_interval={EVERY}",
    "+callbacks.throttle._target_=tests.throttle.Throttle",  # 0.2 s a step: time to kill between steps
]
MODELS = {
    "synseg": ["model=synseg", "model.decoder_init=random", "clip.pretrained=null"],
    "synseg_weak": ["model=synseg_weak", "clip.pretrained=null"],
    "mixreorg": ["model=mixreorg", "clip.pretrained=null"],
    "toyclip": ["model=toyclip", "model.grayscale_p=0.5"],
    "dense_decoder": ["model=dense_decoder", "data=toy_dense", "clip.pretrained=null"],
}
ENV = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def command(root: Path, model: str, run: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "synseg.train", f"paths.root_dir={root}", f"run_name={run}",
            *TINY, *MODELS[model], *extra]  # fmt: skip


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT)


def tensors(obj: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a (nested) checkpoint, by path."""
    if torch.is_tensor(obj):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else []
    return {k: v for key, value in items for k, v in tensors(value, f"{prefix}/{key}").items()}


def csv_rows(run: Path) -> list[dict[str, str]]:
    with (run / "csv" / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_killed_runs_resume_bit_for_bit(tmp_path: Path) -> None:
    rng = random.Random(os.getpid())
    procs = {}
    for model in MODELS:  # every uninterrupted and to-be-killed run at once (one thread each)
        for run in ("full", "killed"):
            procs[model, run] = start(command(tmp_path / model, model, run), tmp_path / f"{model}-{run}.log")
    killed_at = {}
    deadline = time.time() + 600
    pending = set(MODELS)
    while pending and time.time() < deadline:
        for model in list(pending):
            ckpt = tmp_path / model / "logs" / "train" / "killed" / "checkpoints" / "last.ckpt"
            if ckpt.is_file():
                time.sleep(rng.uniform(0.0, 0.4))  # any moment after the first checkpoint
                procs[model, "killed"].send_signal(signal.SIGKILL)
                procs[model, "killed"].wait()
                killed_at[model] = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
                pending.discard(model)
        time.sleep(0.02)
    assert not pending, f"no checkpoint appeared for {pending}"
    for (model, run), proc in procs.items():
        if run == "full":
            assert proc.wait(timeout=600) == 0, (tmp_path / f"{model}-full.log").read_text()[-3000:]
    assert all(EVERY <= step < STEPS for step in killed_at.values()), killed_at  # killed mid-run

    resumed = {m: start(command(tmp_path / m, m, "killed", "resume=true"), tmp_path / f"{m}-resume.log")
               for m in MODELS}  # fmt: skip
    for model, proc in resumed.items():
        assert proc.wait(timeout=600) == 0, (tmp_path / f"{model}-resume.log").read_text()[-3000:]

    for model in MODELS:
        runs = tmp_path / model / "logs" / "train"
        full = torch.load(runs / "full" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        again = torch.load(
            runs / "killed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
        )
        assert full["global_step"] == again["global_step"] == STEPS
        # ModelCheckpoint's bookkeeping names files by path: the run folders differ by name only
        a = {k.replace("/train/full/", "/train/<run>/"): v for k, v in tensors(full).items()}
        b = {k.replace("/train/killed/", "/train/<run>/"): v for k, v in tensors(again).items()}
        assert a.keys() == b.keys() and any(k.startswith("/state_dict/") for k in a), model
        unequal = [k for k in a if not torch.equal(a[k], b[k])]
        assert not unequal, f"{model} (killed at step {killed_at[model]}): {unequal[:5]}"
        # the log continues: the rows before the kill kept, the ones after the checkpoint not doubled
        assert csv_rows(runs / "killed") == csv_rows(runs / "full"), model
        metrics = [json.loads((runs / r / "metrics.json").read_text()) for r in ("full", "killed")]
        for m, r in zip(metrics, ("full", "killed"), strict=True):
            m.update(
                {k: str(v).replace(f"/train/{r}/", "/train/<run>/") for k, v in m.items() if k == "best/path"}
            )
        assert json.dumps(metrics[0], sort_keys=True) == json.dumps(metrics[1], sort_keys=True), (
            model
        )  # nan == nan

    # wandb: the resumed process logged to the same run id (a second offline file of one run), which is
    # this folder's own id; the uninterrupted run has another.
    runs = tmp_path / "synseg" / "logs" / "train"
    ids = [p.name.rsplit("-", 2)[-2:] for p in sorted((runs / "killed" / "wandb").glob("offline-run-*"))]
    own = json.loads((runs / "killed" / "run.json").read_text())["wandb_id"]
    assert len(ids) == 2 and all("-".join(i) == own for i in ids)
    assert json.loads((runs / "full" / "run.json").read_text())["wandb_id"] != own
    assert len(json.loads((runs / "killed" / "run.json").read_text())["starts"]) == 2


def test_make_train_resume_and_overwrite_compose_the_flags() -> None:
    for flag, expected in (("RESUME=1", "resume=true"), ("OVERWRITE=1", "overwrite=true")):
        done = subprocess.run(
            ["make", "-n", "--no-print-directory", "train", "MODEL=toyclip", "RUN=x", flag],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        line = next(ln for ln in done.stdout.splitlines() if "-m synseg.train" in ln)
        assert expected in line.split() and "run_name=x" in line.split()


@pytest.mark.parametrize("value", ["true", "auto"])
def test_finished_run_has_nothing_to_resume(tmp_path: Path, value: str) -> None:
    from synseg.checkpoint_files import atomic_torch_save

    run = tmp_path / "logs" / "train" / "done"
    atomic_torch_save({"global_step": STEPS}, run / "checkpoints" / "last.ckpt")
    cmd = command(tmp_path, "toyclip", "done", f"resume={value}")
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: RESUME=1: ")
    assert "finished" in done.stderr
