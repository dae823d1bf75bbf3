"""A compare report from its runs: `results.json`, `report.md` (also returned as the printed table),
`compare.png`, `curves.png` (val mIoU against step) and `gallery.png`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from synseg.compare.curves import curves_markdown, learning_curves, plot_curves
from synseg.compare.methods import METHODS, paired_comparisons
from synseg.compare.stats import mean_std, paired_delta

DIAGNOSTICS = ("act_in", "act_bg", "act_absent", "fg_pixel_acc", "image_top1", "threshold")
# Training-time diagnostics (the last logged value, from metrics.json) reported where a method logs them.
TRAIN_DIAGNOSTICS = ("train/mix_patch_acc",)


def _f(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _mean_std(m: dict[str, Any] | None) -> str:
    return "n/a" if m is None else f"{_f(m['mIoU_mean'])} ± {_f(m['mIoU_std'])}"


def test_datasets(rows: list[dict[str, Any]]) -> list[str]:
    """The test sets the runs report (`test/<set>/mIoU` in their metrics), in name order."""
    names = {
        k.split("/")[1]
        for r in rows
        for k in r.get("metrics", {})
        if k.startswith("test/") and k.endswith("/mIoU")
    }
    return sorted(names)


def aggregate(
    rows: list[dict[str, Any]], dataset: str | None = None, plan: str = "compare"
) -> dict[str, Any]:
    """results.json content for one test set (default: the first the runs report): per method mean ± std
    over seeds, per-class IoU means, diagnostics, timing; paired deltas; the reference levels."""
    methods: dict[str, Any] = {}
    refs: dict[str, float] = {}
    dataset = dataset or next(iter(test_datasets(rows)), "toy")
    prefix = f"test/{dataset}"
    for name in dict.fromkeys(r["method"] for r in rows):
        runs = [r for r in rows if r["method"] == name]
        ok = [r for r in runs if r["status"] == "ok"]
        per_seed = {r["seed"]: r["metrics"][f"{prefix}/mIoU"] for r in ok}
        mean, std = mean_std(list(per_seed.values()))
        classes = sorted({k.rsplit("/", 1)[1] for r in ok for k in r["metrics"] if "/per_class/" in k})
        per_class = {c: mean_std([r["metrics"][f"{prefix}/per_class/{c}"] for r in ok])[0] for c in classes}
        m = METHODS[name]
        methods[name] = {
            "supervision": m.supervision,
            "note": m.note,
            "trained": m.trained,
            "mIoU_mean": mean,
            "mIoU_std": std,
            "mIoU_per_seed": [per_seed[s] for s in sorted(per_seed)],
            "seeds": sorted(per_seed),
            "per_class": per_class,
            "diagnostics": {
                d: mean_std([r["metrics"][f"{prefix}/{d}"] for r in ok if f"{prefix}/{d}" in r["metrics"]])[0]
                for d in DIAGNOSTICS
            },
            "train_diagnostics": {
                d: mean_std([r["metrics"][d] for r in ok])[0]
                for d in TRAIN_DIAGNOSTICS
                if ok and all(d in r["metrics"] for r in ok)
            },
            "seconds": sum(r["seconds"] for r in runs),
            "seconds_per_run": mean_std([r["seconds"] for r in runs])[0],
            "images_per_s": mean_std([r["images_per_s"] for r in ok])[0],
            "failed": [
                {"seed": r["seed"], "status": r["status"], "log": r["log"]} for r in runs if r not in ok
            ],
            "run_dirs": [r["run_dir"] for r in ok],
        }
        for r in ok:
            refs.update(
                {k[len("reference/") :]: v for k, v in r["metrics"].items() if k.startswith("reference/")}
            )
    by_seed = {n: dict(zip(v["seeds"], v["mIoU_per_seed"], strict=True)) for n, v in methods.items()}
    deltas = {}
    for a, b in paired_comparisons(plan, list(by_seed)):
        deltas[f"{a} - {b}"] = paired_delta(by_seed[a], by_seed[b])
    return {"dataset": dataset, "methods": methods, "paired_deltas": deltas, "references": refs}


def markdown(results: dict[str, Any], config: dict[str, Any]) -> str:
    """report.md: the protocol line, the main table, paired deltas, per-class IoU, diagnostics, references."""
    methods = results["methods"]
    steps = config.get("steps") or "config default (total_steps)"
    others = results.get("other_datasets", {})  # e.g. toy_ood beside toy: one more column each
    extra_head = "".join(f" {n} mIoU |" for n in others)
    lines = [
        f"# Compare `{config['name']}`",
        "",
        f"Dataset `{results['dataset']}` (test split; threshold selected on val)"
        + (f", also tested on {', '.join(f'`{n}`' for n in others)}" if others else "")
        + f". Seeds {config['seeds']}, "
        f"steps {steps}, same data, backbone and budget for every method; each run is tested on its final "
        "weights (`test_ckpt=last`: a fixed budget, as the papers report; best.ckpt stays in its folder). "
        "Extra overrides: "
        f"`{' '.join(config.get('args', [])) or 'none'}`. mIoU as fractions.",
        "",
        f"| method | supervision | {results['dataset']} mIoU (mean ± std) | per seed |{extra_head} "
        "wall s, all seeds | images/s | status |",
        "|---|---|---|---|" + "---|" * len(others) + "---|---|---|",
    ]
    for name, m in methods.items():
        status = (
            "ok"
            if not m["failed"]
            else "; ".join(f"seed {f['seed']} {f['status']}: {f['log']}" for f in m["failed"])
        )
        lines.append(
            f"| {name} | {m['supervision']} | {_f(m['mIoU_mean'])} ± {_f(m['mIoU_std'])} | "
            f"{', '.join(_f(v) for v in m['mIoU_per_seed']) or '-'} |"
            + "".join(f" {_mean_std(o['methods'].get(name))} |" for o in others.values())
            + f" {m['seconds']:.0f} | "
            f"{_f(m['images_per_s'], 1)} | {status} |"
        )
    lines += ["", "## Paired per-seed deltas (95% t interval; needs >= 2 seeds)", ""]
    lines += ["| comparison | seeds | mean delta | 95% interval |", "|---|---|---|---|"]
    for name, d in results["paired_deltas"].items():
        ci = f"[{_f(d['low'])}, {_f(d['high'])}]" if d["low"] is not None else "n/a (1 seed)"
        lines.append(f"| {name} | {d['n']} | {_f(d['mean'])} | {ci} |")
    for other, res in others.items():  # the same pairs on every other test set (e.g. toy_ood)
        lines += [
            "",
            f"Paired deltas on `{other}`:",
            "",
            "| comparison | seeds | mean delta | 95% interval |",
        ]
        lines.append("|---|---|---|---|")
        for name, d in res["paired_deltas"].items():
            ci = f"[{_f(d['low'])}, {_f(d['high'])}]" if d["low"] is not None else "n/a (1 seed)"
            lines.append(f"| {name} | {d['n']} | {_f(d['mean'])} | {ci} |")
    classes = sorted({c for m in methods.values() for c in m["per_class"]})
    if classes:
        lines += ["", "## Per-class IoU (mean over seeds)", ""]
        lines += ["| method | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
        for name, m in methods.items():
            lines.append(f"| {name} | " + " | ".join(_f(m["per_class"].get(c)) for c in classes) + " |")
    lines += ["", "## Collapse diagnostics (test, mean over seeds)", ""]
    lines += ["act_in / act_bg: mean score inside vs outside the true class's pixels (inverted maps: act_in "
              "<= act_bg); act_absent: mean score of classes absent from the image.", ""]  # fmt: skip
    lines += [
        "| method | " + " | ".join(DIAGNOSTICS) + " | inverted |",
        "|---" * (len(DIAGNOSTICS) + 2) + "|",
    ]
    for name, m in methods.items():
        dg = m["diagnostics"]
        inv = "n/a" if math.isnan(dg["act_in"]) else ("YES" if dg["act_in"] <= dg["act_bg"] else "no")
        lines.append(f"| {name} | " + " | ".join(_f(dg[d]) for d in DIAGNOSTICS) + f" | {inv} |")
    trained = {n: m["train_diagnostics"] for n, m in methods.items() if m.get("train_diagnostics")}
    if trained:
        lines += ["", "## Training diagnostics (last logged value, mean over seeds)", ""]
        lines += [
            "| method | " + " | ".join(TRAIN_DIAGNOSTICS) + " |",
            "|---" * (len(TRAIN_DIAGNOSTICS) + 1) + "|",
        ]
        for name, dg in trained.items():
            lines.append(f"| {name} | " + " | ".join(_f(dg.get(d)) for d in TRAIN_DIAGNOSTICS) + " |")
    lines += curves_markdown(results.get("curves", {"methods": {}}))
    lines += ["", "## Reference levels (test mIoU)", ""]
    lines += [f"- {k}: {_f(v)}" for k, v in results["references"].items()]
    lines += ["", "Methods: " + "; ".join(f"`{n}`: {m['note']}" for n, m in methods.items()) + "."]
    return "\n".join(lines) + "\n"


def write_report(out: Path, rows: list[dict[str, Any]], config: dict[str, Any], gallery: bool = True) -> str:
    """Writes results.json, report.md, compare.png, curves.png and (optionally) gallery.png; returns the
    markdown."""
    from synseg.compare.plots import plot_compare, plot_gallery

    sets = test_datasets(rows)
    plan = config.get("plan", "compare")
    results = {**aggregate(rows, plan=plan), "curves": learning_curves(rows), "config": config}
    if len(sets) > 1:  # every other test set gets its own aggregate in results.json
        results["other_datasets"] = {
            name: aggregate(rows, name, plan) for name in sets if name != results["dataset"]
        }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = markdown(results, config)
    (out / "report.md").write_text(text)
    plot_compare(results, out / "compare.png")
    plot_curves(results["curves"], out / "curves.png")
    if gallery:
        plot_gallery(results, out / "gallery.png")
    return text
