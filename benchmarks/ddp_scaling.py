"""DDP scaling of the real SynSeg training step: one process with batch B against two processes with batch B
each, under Lightning's own DDP on CPU (gloo), one torch thread per process.

    python benchmarks/ddp_scaling.py [--batch-size 64] [--steps 20] [--warmup 5] [--rounds 3]
        [--recipe synseg|synseg_weak] [--backbone toyclip-vit-p8c] [--image-size N] [--strategy ddp|ddp_spawn]

Each setting is a `lightning.pytorch.Trainer(accelerator="cpu", devices=1|2, strategy="ddp")` fit of
`SynSegModule` on `CaptionDataModule(source="toy")`, so every DDP code path of the module runs (collectives
inside `training_step`, the gradient all-reduce of the trainable head). The module is built from
configs/model/<recipe>.yaml as a training run builds it (random weights; `synseg` with a random decoder
init); `--recipe synseg_weak` adds absent-category negatives, a presence BCE and a prompt InfoNCE, whose
global-batch categories are gathered across ranks. A callback times each step from
`on_train_batch_start` to `on_train_batch_end` (forward, backward with the all-reduce, optimiser step; data
loading excluded) on every rank; the first `--warmup` steps are dropped. A setting's step time is the
slowest rank's median. The two settings alternate for `--rounds` rounds, each round gives one ratio, and the
script ends with their median:

    ddp 2-proc efficiency: X      # (1-process step time) / (2-process step time), same per-process work

1.00 is perfect weak scaling. On a 2-core machine the two processes also share caches and memory
bandwidth, so what is lost bounds the cost of communication and synchronisation from above."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

RECIPES = ("synseg", "synseg_weak")  # configs/model/<recipe>.yaml


class StepTimer(pl.Callback):
    """Wall-clock seconds of each training step (batch start to batch end) on this rank, written with the
    gaps between steps (data loading, loop overhead) to `<out>/rank<r>.json` at the end of the fit."""

    def __init__(self, steps: int, out: str) -> None:
        self.steps, self.out = steps, out
        self.times: list[float] = []
        self.gaps: list[float] = []
        self.start = self.end = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.set_num_threads(1)  # whatever the launcher chose

    def on_train_batch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        self.start = time.perf_counter()
        if self.end:
            self.gaps.append(self.start - self.end)

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        self.end = time.perf_counter()
        self.times.append(self.end - self.start)
        n = len(self.times)
        if trainer.global_rank == 0 and (n % 4 == 0 or n == self.steps):
            ms = 1000 * self.times[-1]
            print(f"    {trainer.world_size} proc: step {n}/{self.steps} {ms:.0f} ms", flush=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record = {
            "rank": trainer.global_rank,
            "world": trainer.world_size,
            "threads": torch.get_num_threads(),
            "times": self.times,
            "gaps": self.gaps,
        }
        (Path(self.out) / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def worker(args: argparse.Namespace) -> None:
    """One Trainer fit with `args.devices` processes; every rank writes its step times to `args.out`."""
    torch.set_num_threads(1)
    from step_time import build_module

    from synseg.data.datamodule import CaptionDataModule

    torch.manual_seed(0)
    module = build_module(args.recipe, args.backbone)
    dm = CaptionDataModule(
        source="toy",
        batch_size=args.batch_size,
        total_steps=args.steps,
        num_workers=0,
        backbone=args.backbone,
        image_size=args.image_size,
        toy={"root": args.data_root, "n_val": 4, "n_test": 4},
        tagger={"cache_dir": None},
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy=args.strategy,
        max_steps=args.steps,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[StepTimer(args.steps, args.out)],
    )
    trainer.fit(module, datamodule=dm)


def run_setting(args: argparse.Namespace, devices: int, out: Path, data_root: Path) -> list[float]:
    """Runs one Trainer fit with `devices` processes in a fresh interpreter; per-rank median step seconds."""
    out.mkdir(parents=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        f"--devices={devices}",
        f"--out={out}",
        f"--data-root={data_root}",
        f"--batch-size={args.batch_size}",
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--backbone={args.backbone}",
        f"--strategy={args.strategy}",
        f"--recipe={args.recipe}",
    ] + ([f"--image-size={args.image_size}"] if args.image_size else [])
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # Lightning's launchers respect it (and the worker sets 1 thread)
        "MKL_NUM_THREADS": "1",
        "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONWARNINGS": "ignore",
    }
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("    ")]
    print("\n".join(lines), flush=True)
    if proc.returncode != 0:
        print(proc.stdout[-4000:], file=sys.stderr)
        raise SystemExit(f"{devices}-process run failed (exit {proc.returncode})")
    medians = []
    for rank in range(devices):
        record = json.loads((out / f"rank{rank}.json").read_text())
        if record["threads"] != 1:
            raise SystemExit(f"rank {rank} ran with {record['threads']} torch threads, expected 1")
        times = record["times"][args.warmup :]
        if not times:
            raise SystemExit(f"--steps {args.steps} leaves no step after --warmup {args.warmup}")
        medians.append(statistics.median(times))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64, help="per process (paper scale: 64 per GPU)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per fit")
    parser.add_argument("--warmup", type=int, default=5, help="first steps of each fit not timed")
    parser.add_argument("--rounds", type=int, default=3, help="alternating (1-proc, 2-proc) pairs")
    parser.add_argument("--recipe", choices=RECIPES, default="synseg")
    parser.add_argument("--backbone", default="toyclip-vit-p8c")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--strategy", choices=("ddp", "ddp_spawn"), default="ddp")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    parser.add_argument("--data-root", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.steps <= args.warmup:
        parser.error(f"--steps {args.steps} must exceed --warmup {args.warmup}")
    print(
        f"{args.recipe} step under Lightning {args.strategy} (gloo, CPU, 1 thread/process): {args.backbone}, "
        f"batch {args.batch_size} per process, {args.steps} steps ({args.warmup} warm-up), "
        f"{args.rounds} rounds, {os.cpu_count()} CPUs",
        flush=True,
    )
    one, two, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            t1 = run_setting(args, 1, Path(tmp) / f"r{r}-d1", Path(tmp) / "toy")
            t2 = run_setting(args, 2, Path(tmp) / f"r{r}-d2", Path(tmp) / "toy")
            one.append(t1[0])
            two.append(max(t2))
            ratios.append(t1[0] / max(t2))
            print(
                f"round {r + 1}/{args.rounds}: 1 proc {1000 * t1[0]:.0f} ms/step; 2 procs "
                + ", ".join(f"{1000 * t:.0f}" for t in t2)
                + f" ms/step (rank 0, 1); ratio {ratios[-1]:.2f}",
                flush=True,
            )
    print(f"1-proc step ms (median): {1000 * statistics.median(one):.0f}")
    print(f"2-proc step ms per process (median): {1000 * statistics.median(two):.0f}")
    print(f"ddp 2-proc efficiency: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
