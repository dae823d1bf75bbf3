"""DDP on CPU with real processes, through Lightning's own strategy (gloo), as users launch it:

- evaluation: `trainer=ddp_sim trainer.devices=2` gives the single-process test mIoU and per-class IoU (every
  image once across ranks, metric states summed, the threshold chosen on the whole val set);
- training: k steps on 2 processes x B/2 images give the weights of 1 process x B images for every trained
  model (MCCL's per-image means, negatives and prompt banks over the global batch, MixReorg's global
  negatives and mixing layout, CLIP's gathered loss, the grey-image draws);
- multi-node: two `torchrun --nnodes 2` processes (node ranks 0 and 1) give `trainer=ddp_sim`'s metrics."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

ENV = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
EVAL_TINY = ["data.toy.n_val=11", "data.toy.n_test=11", "data.num_workers=0", "logger=csv"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(root: Path, run: str, *overrides: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    cmd = [*prefix, "-m", "synseg.train"] if prefix else [sys.executable, "-m", "synseg.train"]
    cmd += [f"paths.root_dir={root}", f"run_name={run}", *overrides]
    log = (root / f"{run}-{len(list(root.glob(f'{run}-*.log')))}.log").open("w")
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, root: Path) -> None:
    code = proc.wait(timeout=900)
    assert code == 0, "\n".join(p.read_text()[-2500:] for p in sorted(root.glob("*.log")))


def metrics(root: Path, run: str) -> dict[str, float]:
    return json.loads((root / "logs" / "train" / run / "metrics.json").read_text())


def same(a: float | str, b: float | str, tol: float = 1e-6) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def test_ddp_sim_evaluation_equals_single_process(tmp_path: Path) -> None:
    common = ["model=maskclip", "clip.pretrained=null", *EVAL_TINY]  # 11 images: 6 + 5 per rank
    procs = [train(tmp_path, "single", *common), train(tmp_path, "ddp", *common, "trainer=ddp_sim")]
    for proc in procs:
        finish(proc, tmp_path)
    single, ddp = metrics(tmp_path, "single"), metrics(tmp_path, "ddp")
    keys = [k for k in single if k.startswith(("test/toy/", "val/toy/"))]
    assert "test/toy/mIoU" in keys and any("/per_class/" in k for k in keys)
    assert ddp["test/toy/n_images"] == single["test/toy/n_images"] == 11  # every image once
    unequal = {k: (single[k], ddp.get(k)) for k in keys if not same(single[k], ddp.get(k, float("inf")))}
    assert not unequal, unequal
    run = tmp_path / "logs" / "train" / "ddp"
    assert (run / "train_ddp_process_1.log").is_file()  # the second rank really ran
    assert len(json.loads((run / "run.json").read_text())["starts"]) == 1  # the folder decided once


def test_training_under_lightning_ddp_equals_single_process(tmp_path: Path) -> None:
    """SGD without warm-up: every update is proportional to the gradient, so a wrong cross-rank reduction
    shows in the weights (breaking MCCL's count sync makes the difference 5% of the update)."""
    models = ["synseg", "synseg_weak", "mixreorg", "toyclip"]
    worker = str(ROOT / "tests" / "ddp_training_worker.py")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(free_port())]  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, worker, str(tmp_path), "8", "3", "sgd", *models], cwd=ROOT, env=ENV
        ),
        subprocess.Popen([*torchrun, worker, str(tmp_path), "4", "3", "sgd", *models], cwd=ROOT, env=ENV),
    ]
    assert [p.wait(timeout=900) for p in procs] == [0, 0]
    for model in models:
        one, two = (torch.load(tmp_path / f"{model}-w{w}.pt", weights_only=True) for w in (1, 2))
        a, b, init = one["final"], two["final"], one["init"]
        assert a.keys() == b.keys() and a
        diff = max(float((a[k] - b[k]).abs().max()) for k in a)
        moved = max(float((a[k] - init[k]).abs().max()) for k in a)
        assert moved > 1e-3, model  # it trained
        assert diff / moved <= 1e-4, f"{model}: max |ddp - single| {diff:.3g} vs max update {moved:.3g}"


def test_two_nodes_with_torchrun_equal_ddp_sim(tmp_path: Path) -> None:
    """The README's CPU form of a 2-node launch (node ranks 0 and 1 on this machine)."""
    common = ["model=synseg", "model.decoder_init=random", "clip.pretrained=null",
              "data.batch_size=4", "total_steps=4", "trainer.val_check_interval=2", *EVAL_TINY]  # fmt: skip
    nodes = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2",
             "trainer.precision=32-true"]  # fmt: skip
    port = str(free_port())
    procs = [
        train(tmp_path, "two-nodes", *common, *nodes, prefix=(
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", port))
        for rank in (0, 1)
    ]  # fmt: skip
    procs.append(train(tmp_path, "ddp-sim", *common, "trainer=ddp_sim", "trainer.devices=2"))
    for proc in procs:
        finish(proc, tmp_path)
    nodes_m, sim_m = metrics(tmp_path, "two-nodes"), metrics(tmp_path, "ddp-sim")
    assert nodes_m["global_step"] == sim_m["global_step"] == 4
    keys = [k for k in sim_m if k.startswith(("test/", "val/", "train/loss"))]
    unequal = {
        k: (sim_m[k], nodes_m.get(k)) for k in keys if not same(sim_m[k], nodes_m.get(k, float("inf")))
    }
    assert not unequal, unequal
    run = tmp_path / "logs" / "train" / "two-nodes"
    assert len(json.loads((run / "run.json").read_text())["starts"]) == 1  # written once, by node rank 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


@pytest.mark.parametrize("newest", ["hpc", "last"])
def test_slurm_environment_and_requeue_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, newest: str
) -> None:
    """The sbatch template's job: Lightning detects SLURM (auto-requeue on SIGUSR1 saves hpc_ckpt_N.ckpt in
    the run folder), and `resume=auto` continues from the newest of that and last.ckpt."""
    import time

    import hydra
    from hydra import compose, initialize_config_dir
    from lightning.fabric.plugins.environments import SLURMEnvironment

    from synseg.run_folder import prepare_run_folder

    template = (ROOT / "scripts" / "train.sbatch").read_text()
    needed = ["#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue", "srun ", "-m synseg.train", "resume=auto"]
    for text in [*needed, "trainer.num_nodes=$SLURM_NNODES", "run_name="]:
        assert text in template, text
    fake = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NAME": "synseg"}
    fake.update({"SLURM_JOB_ID": "77", "SLURM_NODELIST": "node1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"})
    fake.update({"SLURM_NODEID": "0", "SLURM_NNODES": "1"})
    for key, value in fake.items():
        monkeypatch.setenv(key, value)
    assert SLURMEnvironment.detect()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        overrides = ["trainer=slurm", "trainer.accelerator=cpu", "trainer.devices=2"]
        paths = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/o"]
        cfg = compose("train", overrides=[*overrides, *paths])
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    env = trainer._accelerator_connector.cluster_environment
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal.name == "SIGUSR1"
    assert env.world_size() == 2 and env.global_rank() == 0

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in (("checkpoints/last.ckpt", "hpc_ckpt_1.ckpt") if newest == "hpc" else
                 ("hpc_ckpt_1.ckpt", "checkpoints/last.ckpt")):  # fmt: skip
        (run / name).write_bytes(b"x")
        time.sleep(0.02)
    decision = prepare_run_folder(run, "synseg-77", resume="auto", launcher=True)
    expected = run / ("hpc_ckpt_1.ckpt" if newest == "hpc" else "checkpoints/last.ckpt")
    assert decision.ckpt_path == expected
