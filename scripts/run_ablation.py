"""Runs the SynSeg toy studies (seeds, switch ablation, loss ablation) one run after the other and writes
a markdown + json table. Resumable: a run whose metrics.json exists is not run again.

    python scripts/run_ablation.py seeds      # synseg and synseg_weak over seeds 0 1 2, maskclip
    python scripts/run_ablation.py switches   # weak-only recipes from the paper's literal setting upwards
    python scripts/run_ablation.py loss       # each MCCL term off, for both recipes
    python scripts/run_ablation.py literal    # the paper's literal loss from a random decoder, seeds 0 1 2

Every run uses the same data, stand-in CLIP, step budget (train.yaml) and evaluation."""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEAK_LITERAL = ["model.decoder_init=random", "model.decoder_ckpt=null"]
PLANS: dict[str, list[tuple[str, str, list[str], list[int]]]] = {
    # name, model, overrides, seeds
    "seeds": [
        ("maskclip", "maskclip", [], [0]),
        ("synseg", "synseg", [], [0, 1, 2]),
        ("synseg_weak", "synseg_weak", [], [0, 1, 2]),
        ("synseg_weak_extras", "synseg_weak_extras", [], [0, 1, 2]),
    ],
    "literal": [("paper literal, random init", "synseg", WEAK_LITERAL, [0, 1, 2])],
    "switches": [
        ("paper literal, random init", "synseg", WEAK_LITERAL, [0]),
        ("+ V frozen", "synseg", [*WEAK_LITERAL, "model.fss_source=frozen"], [0]),
        (
            "+ V frozen + absent negatives",
            "synseg",
            [*WEAK_LITERAL, "model.fss_source=frozen", "model.negatives.weight=1.0"],
            [0],
        ),
        (
            "+ V frozen + negatives + presence",
            "synseg",
            [
                *WEAK_LITERAL,
                "model.fss_source=frozen",
                "model.negatives.weight=1.0",
                "model.presence_weight=1.0",
            ],
            [0],
        ),
        ("+ prompt InfoNCE (= synseg_weak_extras)", "synseg_weak_extras", [], [0]),
        ("synseg_weak_extras, MCCL weights 0", "synseg_weak_extras", ["model.loss.weights={align:0,cont:0,back:0,sep:0}"], [0]),
        ("synseg_weak_extras with V conditioned (= synseg_weak)", "synseg_weak", [], [0]),
    ],
    "loss": [
        (f"{recipe} {label}", recipe, [f"model.loss.weights={w}"] if w else [], [0])
        for recipe in ("synseg", "synseg_weak")
        for label, w in (
            ("all terms", None),  # = the base run of the recipe (seed 0), reused
            ("w/o align", "[0,1,1,1]"),
            ("w/o cont", "[1,0,1,1]"),
            ("w/o back", "[1,1,0,1]"),
            ("w/o sep", "[1,1,1,0]"),
        )
    ],
}
# The weak recipe's rows of "loss" alone, so that two processes can share that plan's runs.
PLANS["loss_weak"] = [row for row in PLANS["loss"] if row[1] == "synseg_weak"]
KEYS = ("mIoU", "fg_pixel_acc", "image_top1", "act_in", "act_bg", "act_absent", "threshold")


def run_name(model: str, overrides: list[str], seed: int) -> str:
    """The same configuration gets the same run folder in every plan, so it runs once."""
    tag = hashlib.sha1(" ".join(sorted(overrides)).encode()).hexdigest()[:8] if overrides else "base"
    return f"abl-{model}-{tag}-s{seed}"


def run(plan: str, name: str, model: str, overrides: list[str], seed: int) -> dict | None:
    rn = run_name(model, overrides, seed)
    metrics = ROOT / "logs" / "train" / rn / "metrics.json"
    if not metrics.is_file():
        cmd = [
            sys.executable,
            "-m",
            "synseg.train",
            f"model={model}",
            f"seed={seed}",
            f"run_name={rn}",
            "resume=auto",  # a run killed earlier continues; one that never checkpointed starts again
            *overrides,
        ]
        print("+", " ".join(cmd[2:]), flush=True)
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            print(f"  FAILED ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}", flush=True)
            return None
    return json.loads(metrics.read_text())


def fmt(values: list[float]) -> str:
    if not values:
        return "failed"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", choices=sorted(PLANS))
    parser.add_argument("--out", default=None, help="report folder (default reports/synseg_toy_<plan>)")
    args = parser.parse_args()
    rows, results = [], {}
    for name, model, overrides, seeds in PLANS[args.plan]:
        per_seed = [m for s in seeds if (m := run(args.plan, name, model, overrides, s)) is not None]
        vals = {k: [m[f"test/toy/{k}"] for m in per_seed if f"test/toy/{k}" in m] for k in KEYS}
        inverted = [m["test/toy/act_in"] <= m["test/toy/act_bg"] for m in per_seed if "test/toy/act_in" in m]
        results[name] = {
            "model": model,
            "overrides": overrides,
            "seeds": seeds,
            "per_seed": {k: v for k, v in vals.items()},
            "inverted": inverted,
        }
        rows.append(
            f"| {name} | {fmt(vals['mIoU'])} | {fmt(vals['fg_pixel_acc'])} | {fmt(vals['image_top1'])} | "
            f"{fmt(vals['act_in'])} / {fmt(vals['act_bg'])} / {fmt(vals['act_absent'])} | "
            f"{'YES' if any(inverted) else 'no'} |"
        )
        print(rows[-1], flush=True)
    out = Path(args.out or ROOT / "reports" / f"synseg_toy_{args.plan}")
    out.mkdir(parents=True, exist_ok=True)
    header = (
        "| run | test mIoU | fg pixel acc | image top-1 | act in / bg / absent | inverted |\n"
        "|---|---|---|---|---|---|"
    )
    (out / "results.md").write_text(header + "\n" + "\n".join(rows) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(header + "\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
