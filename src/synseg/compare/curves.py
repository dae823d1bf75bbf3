"""Learning curves of a compare: val mIoU against step for every method and seed, read from each run's CSV
log (`<run>/csv/metrics.csv`), as a results.json entry, a report.md table and `curves.png`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

Curve = list[list[float]]  # [[step, val mIoU], ...] in step order


def read_curve(run_dir: Path, trained: bool) -> tuple[str | None, Curve]:
    """(val set, [[optimiser step, mIoU], ...]) of one run: the first `val/<set>/mIoU` column of its CSV log,
    one point per validation (a resumed run's log holds each step once). (None, []) when the run has no log.

    Lightning logs a validation inside training at the index of the batch just done (step 99 after 100
    optimiser steps), so a `trained` run's points move one step on; an evaluation-only run's stay at 0."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return None, []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns = sorted({k for r in rows for k in r if k.startswith("val/") and k.endswith("/mIoU")})
    if not columns:
        return None, []
    column = columns[0]
    shift = int(trained)
    points = {int(r["step"]) + shift: float(r[column]) for r in rows if r.get(column) not in (None, "")}
    return column.split("/")[1], [[step, points[step]] for step in sorted(points)]


def learning_curves(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """{"dataset": val set, "methods": {method: {seed: curve}}} over the successful runs."""
    out: dict[str, Any] = {"dataset": None, "methods": {}}
    for r in rows:
        if r.get("status") != "ok":
            continue
        trained = r["metrics"].get("global_step", 0) > 0  # the run's metrics.json, read by the runner
        dataset, curve = read_curve(Path(r["run_dir"]), trained)
        if curve:
            out["dataset"] = out["dataset"] or dataset
            out["methods"].setdefault(r["method"], {})[str(r["seed"])] = curve
    return out


def curves_markdown(curves: dict[str, Any]) -> list[str]:
    """A report.md section: mean val mIoU over seeds at each validated step, a row per method."""
    methods = curves["methods"]
    steps = sorted({int(p[0]) for runs in methods.values() for c in runs.values() for p in c})
    if not steps:
        return []
    lines = ["", f"## Learning curves (val `{curves['dataset']}` mIoU, mean over seeds; curves.png)", ""]
    lines += ["| method | " + " | ".join(f"step {s}" for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for name, runs in methods.items():
        cells = []
        for s in steps:
            values = [v for c in runs.values() for step, v in c if int(step) == s]
            cells.append(f"{sum(values) / len(values):.3f}" if values else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def plot_curves(curves: dict[str, Any], path: Path) -> None:
    """curves.png: a line per (method, seed), one colour per method; a training-free (or evaluation-only)
    method's single point is drawn as a dashed level across the steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = curves["methods"]
    last = max((p[0] for runs in methods.values() for c in runs.values() for p in c), default=1) or 1
    fig, ax = plt.subplots(figsize=(6.5, 4))
    colours = plt.get_cmap("tab10")
    for i, (name, runs) in enumerate(methods.items()):
        for j, curve in enumerate(runs.values()):
            label = name if j == 0 else None
            steps, values = [p[0] for p in curve], [p[1] for p in curve]
            if len(curve) == 1:
                ax.plot([0, last], [values[0]] * 2, ls="--", lw=1, color=colours(i % 10), label=label)
            else:
                ax.plot(steps, values, marker="o", ms=3, lw=1, color=colours(i % 10), label=label)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(f"val {curves['dataset']} mIoU")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
