"""`make compare` / `python -m synseg.compare`: every method on the same data, backbone, step budget and
seeds, one run after the other (a `python -m synseg.train` process each, never a Hydra multirun), then
a report.

    python -m synseg.compare --name NAME [--models "maskclip synseg ..."] [--seeds "0 1 2"] [--steps N]
                             [--data toy|cc12m|...] [--datasets "voc20 ..."] [--data-root DIR]
                             [--args "hydra overrides for every run"] [--overwrite]

Runs go to <log-dir>/compare/NAME/<method>-s<seed>/ (with <method>-s<seed>.log beside), the report to
<out>/NAME/. A failed run is reported as failed with its log path; the others still run."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from tqdm import tqdm

from synseg.compare.methods import METHODS, PLAN_SEEDS, PLANS


class CompareError(ValueError):
    """Bad compare arguments: printed as one line, exit status 2."""


def parse_seeds(text: str) -> list[int]:
    """'0 1 2' or '0,1,2' -> [0, 1, 2]; anything else is a CompareError naming SEEDS."""
    parts = text.replace(",", " ").split()
    if not parts:
        raise CompareError("SEEDS='': expected one or more integers, e.g. SEEDS=\"0 1 2\"")
    bad = [p for p in parts if not p.lstrip("-").isdigit()]
    if bad:
        raise CompareError(f'SEEDS={text!r}: {bad} are not integers; expected e.g. SEEDS="0 1 2"')
    seeds = [int(p) for p in parts]
    if len(set(seeds)) != len(seeds):
        raise CompareError(f"SEEDS={text!r}: repeated seeds; expected each seed once")
    return seeds


def parse_models(text: str | None, plan: str = "compare") -> list[str]:
    """'maskclip synseg' -> names of the plan's methods (all of them when empty or None); an unknown name is
    a CompareError listing the plan's ones."""
    known = [m.name for m in PLANS[plan]]
    if text is None or not text.strip():
        return known
    names = text.replace(",", " ").split()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CompareError(
            f"MODELS={text!r}: unknown {unknown} in plan {plan}; expected any of {' '.join(known)}"
        )
    return list(dict.fromkeys(names))


def data_overrides(data: str, datasets: list[str] | None, data_root: str | None) -> list[str]:
    """Hydra overrides that put every run of a compare on the same data and val/test sets."""
    out = [f"data={data}"]
    if datasets:
        names = ",".join(datasets)
        out += [f"val.datasets=[{names}]", f"val.test_datasets=[{names}]"]
    if data_root:
        out.append(f"val.data_root={data_root}")
    return out


def run_one(
    method: str, seed: int, run_dir: Path, steps: int | None, group: str, extra: list[str], name: str = ""
) -> dict:
    """One training (or evaluation-only) run in its own process; returns its row (status, metrics, time).
    The run is named `<compare name>-<method>-s<seed>` (its wandb name; the wandb id is unique per folder)."""
    m = METHODS[method]
    run_name = f"{name}-{method}-s{seed}" if name else f"{method}-s{seed}"
    cmd = [
        sys.executable, "-m", "synseg.train",
        f"model={m.model}", f"seed={seed}", f"run_name={run_name}", f"hydra.run.dir={run_dir}",
        f"+wandb_group={group}", "test_ckpt=last", *m.overrides, *([f"total_steps={steps}"] if steps else []),
        *extra,
    ]  # fmt: skip  # test_ckpt=last: every method tested after the same budget (see report.markdown)
    log_path = run_dir.with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_path.open("w") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    row: dict[str, Any] = {"method": method, "seed": seed, "seconds": seconds, "log": str(log_path)}
    metrics_path = run_dir / "metrics.json"
    if code != 0 or not metrics_path.is_file():
        return {**row, "status": f"failed (exit {code})"}
    return finished_row(row, run_dir)


def finished_row(row: dict[str, Any], run_dir: Path) -> dict:
    """`row` (method, seed, seconds, log) of a run that wrote its metrics.json: status ok, metrics and
    images/s (training images plus every evaluated image)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cfg = OmegaConf.load(run_dir / "config.yaml")
    n_eval = sum(int(v) for k, v in metrics.items() if k.endswith("/n_images"))
    images = int(metrics.get("global_step", 0)) * int(cfg.data.batch_size) + n_eval
    return {**row, "status": "ok", "run_dir": str(run_dir), "metrics": metrics,
            "images_per_s": images / row["seconds"]}  # fmt: skip


def existing_row(method: str, seed: int, run_dir: Path) -> dict:
    """The row of a run already on disk (`--report-only`): its metrics, and its wall time read from the files
    it wrote (config.yaml at the start, metrics.json at the end; process start-up not included)."""
    row: dict[str, Any] = {"method": method, "seed": seed, "log": str(run_dir.with_suffix(".log"))}
    metrics_path, config_path = run_dir / "metrics.json", run_dir / "config.yaml"
    if not metrics_path.is_file() or not config_path.is_file():
        return {**row, "seconds": 0.0, "status": f"missing ({metrics_path} not found)"}
    seconds = max(metrics_path.stat().st_mtime - config_path.stat().st_mtime, 1e-6)
    return finished_row({**row, "seconds": seconds}, run_dir)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m synseg.compare", description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="report name: <out>/NAME and <log-dir>/compare/NAME")
    p.add_argument("--plan", default="compare", help=f"what to run: {' | '.join(PLANS)}")
    p.add_argument("--models", default=None, help="methods of the plan, space separated (default: all)")
    p.add_argument("--seeds", default=None, help="integer seeds, space separated (default: the plan's)")
    p.add_argument(
        "--steps", type=int, default=None, help="optimiser steps of every trained run (default: config)"
    )
    p.add_argument("--data", default="toy", help="data config of every run (configs/data)")
    p.add_argument("--datasets", default=None, help="val/test sets of every run (default: the data's own)")
    p.add_argument("--data-root", default=None, help="DATA_ROOT of the benchmark sets")
    p.add_argument("--args", default="", help="Hydra overrides passed to every run (quoted)")
    p.add_argument("--out", default="reports/compare", help="report root")
    p.add_argument("--log-dir", default="logs", help="run root (runs go to <log-dir>/compare/NAME)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report of the same name")
    p.add_argument("--check-only", action="store_true", help="validate the arguments and exit")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the report from the runs already under the run root",
    )
    p.add_argument("--no-gallery", action="store_true", help="skip gallery.png (it reloads every model)")
    p.add_argument("--no-wandb", action="store_true", help="do not log the report to wandb")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.plan not in PLANS:
            raise CompareError(f"PLAN={args.plan!r}: unknown; expected one of {' '.join(PLANS)}")
        seeds = parse_seeds(args.seeds if args.seeds else " ".join(map(str, PLAN_SEEDS[args.plan])))
        models = parse_models(args.models, args.plan)
        if not args.name or "/" in args.name or args.name.startswith("."):
            raise CompareError(f"NAME={args.name!r}: expected a plain folder name")
        if args.steps is not None and args.steps < 1:
            raise CompareError(f"STEPS={args.steps}: expected a positive number of steps")
        out = Path(args.out) / args.name
        run_root = Path(args.log_dir) / "compare" / args.name
        if args.report_only and not run_root.is_dir():
            raise CompareError(f"NAME={args.name}: --report-only needs the runs under {run_root}")
        for path in (out, run_root) if not args.report_only else ():
            if path.exists() and not args.overwrite:
                raise CompareError(
                    f"NAME={args.name}: {path} exists; choose another NAME or pass OVERWRITE=1"
                )
        datasets = args.datasets.replace(",", " ").split() if args.datasets else None
        if args.datasets is not None and not datasets:
            raise CompareError("DATASETS='': expected one or more dataset names, e.g. DATASETS=voc20")
    except CompareError as err:
        print(f"compare: {err}", file=sys.stderr)
        return 2
    if args.check_only:
        return 0
    from synseg.compare.report import write_report

    for path in (out, run_root) if not args.report_only else ():
        if path.exists():
            shutil.rmtree(path)  # only reached with --overwrite (checked above)
    out.mkdir(parents=True, exist_ok=args.report_only)
    extra = data_overrides(args.data, datasets, args.data_root) + shlex.split(args.args)
    plan = [(m, s) for m in models for s in seeds]
    rows = []
    if args.report_only:
        rows = [existing_row(m, s, run_root / f"{m}-s{s}") for m, s in plan]
    bar = tqdm(plan if not args.report_only else [], desc="compare", unit="run")
    for method, seed in bar:
        bar.set_postfix_str(f"{method} seed {seed}")
        row = run_one(
            method, seed, run_root / f"{method}-s{seed}", args.steps, f"compare-{args.name}", extra, args.name
        )
        metrics = row.get("metrics", {})
        miou = next(
            (v for k, v in sorted(metrics.items()) if k.startswith("test/") and k.endswith("/mIoU")), None
        )
        tqdm.write(
            f"  {method:<12} seed {seed}: {row['status']:<16} "
            + (f"test mIoU {miou:.3f}  " if miou is not None else "")
            + f"{row['seconds']:.0f} s  log {row['log']}"
        )
        rows.append(row)
    config = {
        "name": args.name,
        "plan": args.plan,
        "models": models,
        "seeds": seeds,
        "steps": args.steps,
        "data": args.data,
        "datasets": datasets,
        "data_root": args.data_root,
        "args": extra,
    }
    table = write_report(out, rows, config, gallery=not args.no_gallery)
    if not args.no_wandb:  # the report on the dashboard, in the runs' group
        from synseg.wandb_runs import log_compare

        log_compare(run_root, json.loads((out / "results.json").read_text()), out, args.name)
    print(table)
    print(f"report: {out}/report.md")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
