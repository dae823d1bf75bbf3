"""Runs never destroy each other: a second run of the same name is refused in one line before anything is
written, OVERWRITE moves the old folder aside (kept) and starts a new wandb run, RESUME continues in place
with the same wandb id; only the launching process (global rank 0) decides."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from synseg.errors import RunFolderError
from synseg.run_folder import LAST, is_launcher, prepare_run_folder
from tests.conftest import ROOT


def old_run(run_dir: Path, with_ckpt: bool = True) -> None:
    (run_dir / "csv").mkdir(parents=True)
    (run_dir / "csv" / "metrics.csv").write_text("step,train/loss\n0,1.0\n")
    (run_dir / "config.yaml").write_text("seed: 0\n")
    (run_dir / "run.json").write_text(json.dumps({"wandb_id": "old-12345678", "starts": [{}]}))
    if with_ckpt:
        (run_dir / LAST).parent.mkdir()
        (run_dir / LAST).write_bytes(b"ckpt")


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_fresh_run_gets_a_unique_wandb_id(tmp_path: Path) -> None:
    a = prepare_run_folder(tmp_path / "a", "a", launcher=True)
    b = prepare_run_folder(tmp_path / "b", "a", launcher=True)
    assert a.ckpt_path is None and a.wandb_id.startswith("a-") and a.wandb_id != b.wandb_id
    assert json.loads((tmp_path / "a" / "run.json").read_text())["wandb_id"] == a.wandb_id


def test_existing_run_is_refused_and_left_untouched(tmp_path: Path) -> None:
    run = tmp_path / "x"
    old_run(run)
    before = digest(run)
    with pytest.raises(RunFolderError) as err:
        prepare_run_folder(run, "x", launcher=True)
    message = str(err.value)
    assert "\n" not in message and "RESUME=1" in message and "OVERWRITE=1" in message
    assert "checkpoints/last.ckpt" in message and "config.yaml" in message
    assert digest(run) == before


def test_overwrite_moves_the_old_run_aside_and_starts_a_new_wandb_run(tmp_path: Path) -> None:
    run = tmp_path / "x"
    old_run(run)
    before = digest(run)
    decision = prepare_run_folder(run, "x", overwrite=True, launcher=True)
    assert decision.moved_to is not None and digest(decision.moved_to) == before  # kept, not deleted
    assert decision.moved_to.parent == tmp_path / ".overwritten"
    assert decision.ckpt_path is None and decision.wandb_id != "old-12345678"
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]


def test_resume_keeps_the_folder_and_the_wandb_id(tmp_path: Path) -> None:
    run = tmp_path / "x"
    old_run(run)
    decision = prepare_run_folder(run, "x", resume=True, launcher=True)
    assert decision.ckpt_path == run / LAST and decision.wandb_id == "old-12345678"
    assert (run / "csv" / "metrics.csv").is_file()
    assert len(json.loads((run / "run.json").read_text())["starts"]) == 2
    with pytest.raises(RunFolderError, match="RESUME=1 and OVERWRITE=1"):
        prepare_run_folder(run, "x", resume=True, overwrite=True, launcher=True)


def test_resume_needs_a_checkpoint_and_auto_starts_fresh_without_one(tmp_path: Path) -> None:
    run = tmp_path / "x"
    with pytest.raises(RunFolderError, match=r"RESUME=1: .*last.ckpt does not exist"):
        prepare_run_folder(run, "x", resume="true", launcher=True)
    old_run(run, with_ckpt=False)  # killed before its first checkpoint (a requeued SLURM job)
    decision = prepare_run_folder(run, "x", resume="auto", launcher=True)
    assert decision.ckpt_path is None and decision.moved_to is not None
    old_run(tmp_path / "y")
    assert (
        prepare_run_folder(tmp_path / "y", "y", resume="auto", launcher=True).ckpt_path
        == tmp_path / "y" / LAST
    )
    with pytest.raises(RunFolderError, match="resume: 'maybe'"):
        prepare_run_folder(run, "x", resume="maybe", launcher=True)


def test_other_ranks_never_move_or_refuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "x"
    old_run(run)
    before = digest(run)
    decision = prepare_run_folder(run, "x", overwrite=True, launcher=False)
    assert decision.moved_to is None and digest(run) == before and decision.wandb_id == "old-12345678"
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert is_launcher()
    monkeypatch.setenv("LOCAL_RANK", "1")  # a child Lightning's launcher started
    assert not is_launcher()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "2")  # torchrun on another node
    assert not is_launcher()


def test_second_train_with_the_same_name_is_refused_before_writing(tmp_path: Path) -> None:
    run = tmp_path / "logs" / "train" / "same"
    old_run(run)
    before = digest(run)
    cmd = [
        sys.executable,
        "-m",
        "synseg.train",
        f"paths.root_dir={tmp_path}",
        "run_name=same",
        "model=toyclip",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: RUN=same: ") and "RESUME=1" in last and "OVERWRITE=1" in last
    after = digest(run)
    assert {k: v for k, v in after.items() if k != "train.log"} == before  # nothing of the old run changed
