"""The wandb runs that are not training runs: a `make compare` report (its summary table, compare.png and the
gallery, in the compare's group) and a `make eval` (per-dataset metrics and per-class tables). Offline unless
WANDB_MODE says otherwise, like training runs; `make wandb-sync` uploads them (logs/compare, logs/eval)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PROJECT = "synseg-lab"


def _init(folder: Path, job_type: str, name: str, group: str | None, tags: list[str], config: dict) -> Any:
    import wandb

    folder.mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=PROJECT,
        dir=str(folder),
        job_type=job_type,
        name=name,
        group=group,
        tags=tags,
        config=config,
        mode=os.environ.get("WANDB_MODE", "offline"),
        reinit="create_new",
    )


def log_compare(folder: Path, results: dict[str, Any], report_dir: Path, name: str) -> None:
    """One `compare` run in group compare-<name>: the summary table (a row per method), compare.png,
    curves.png and gallery.png, and the paired deltas."""
    import wandb

    run = _init(folder, "compare", f"compare-{name}", f"compare-{name}", ["compare", results["dataset"]],
                dict(results.get("config", {})))  # fmt: skip
    columns = ["method", "supervision", "mIoU_mean", "mIoU_std", "seeds", "seconds"]
    rows = [[m, v["supervision"], v["mIoU_mean"], v["mIoU_std"], len(v["mIoU_per_seed"]), v["seconds"]]
            for m, v in results["methods"].items()]  # fmt: skip
    payload: dict[str, Any] = {"compare/summary": wandb.Table(columns=columns, data=rows)}
    deltas = [[k, d["n"], d["mean"], d["low"], d["high"]] for k, d in results["paired_deltas"].items()]
    payload["compare/paired_deltas"] = wandb.Table(
        columns=["comparison", "seeds", "mean", "low", "high"], data=deltas
    )
    for figure in ("compare.png", "curves.png", "gallery.png"):
        if (report_dir / figure).is_file():
            payload[f"compare/{figure[:-4]}"] = wandb.Image(str(report_dir / figure))
    run.log(payload)
    run.finish()


def log_eval(folder: Path, name: str, source: dict[str, Any], per_dataset: dict[str, dict[str, Any]]) -> None:
    """One `eval` run: every dataset's metrics and a per-class IoU table per dataset."""
    import math

    import wandb

    run = _init(folder, "eval", f"eval-{name}", None, ["eval", *per_dataset], {"source": source})
    payload: dict[str, Any] = {}
    for dataset, results in per_dataset.items():
        for key in ("mIoU", "fg_pixel_acc", "image_top1", "threshold", "n_images"):
            if isinstance(results.get(key), int | float):
                payload[f"eval/{dataset}/{key}"] = results[key]
        rows = [[c, None if v is None or math.isnan(v) else v] for c, v in results["per_class_iou"].items()]
        payload[f"eval/{dataset}/per_class_iou"] = wandb.Table(columns=["class", "IoU"], data=rows)
    run.log(payload)
    run.finish()
