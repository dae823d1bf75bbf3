"""What `python -m synseg.eval` writes and prints per dataset: flat metric keys (`<ds>/mIoU`,
`<ds>/per_class/<name>`, `<ds>/skipped`, ...), a per-class CSV and a plain-text table with the protocol."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from synseg.evaluation.protocol import Protocol

SCALARS = ("mIoU", "fg_pixel_acc", "image_top1", "act_in", "act_bg", "act_absent", "n_images", "seconds")


def json_number(value: Any) -> Any:
    """Floats as JSON numbers, nan / inf as null (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def flat_metrics(dataset: str, results: dict[str, Any]) -> dict[str, Any]:
    """`<dataset>/<metric>` keys; IoUs are fractions, classes excluded from the mean (absent from both
    prediction and truth) are null."""
    out: dict[str, Any] = {f"{dataset}/{k}": json_number(float(results[k])) for k in SCALARS if k in results}
    out[f"{dataset}/n_images"] = int(results.get("n_images", 0))
    out[f"{dataset}/skipped"] = int(results.get("skipped", 0))
    out[f"{dataset}/threshold"] = results.get("threshold")
    for name, iou in results["per_class_iou"].items():
        out[f"{dataset}/per_class/{name}"] = json_number(float(iou))
    return out


def write_per_class_csv(path: Path, results: dict[str, Any]) -> None:
    """class,IoU rows (empty IoU: class absent from both prediction and truth)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "IoU"])
        for name, iou in results["per_class_iou"].items():
            writer.writerow([name, "" if math.isnan(iou) else f"{iou:.6f}"])


def _fmt(value: float) -> str:
    return "  n/a" if math.isnan(value) else f"{value:.4f}"


def format_table(dataset: str, results: dict[str, Any], protocol: Protocol, columns: int = 3) -> str:
    """A plain-text block: headline mIoU, the protocol line, then per-class IoU in `columns` columns."""
    skipped = int(results.get("skipped", 0))
    lines = [
        f"== {dataset}: mIoU {_fmt(results['mIoU'])} over {results.get('n_images', 0)} images"
        f" ({skipped} skipped) in {results.get('seconds', 0.0):.1f} s",
        f"   protocol: {protocol.describe()}",
    ]
    items = list(results["per_class_iou"].items())
    width = max([len(n) for n, _ in items] + [5])
    rows = math.ceil(len(items) / columns)
    for r in range(rows):
        cells = [items[r + c * rows] for c in range(columns) if r + c * rows < len(items)]
        lines.append("   " + "   ".join(f"{n:<{width}} {_fmt(v)}" for n, v in cells))
    for reason in results.get("skipped_items", [])[:10]:
        lines.append(f"   skipped: {reason}")
    if skipped > 10:
        lines.append(f"   ... and {skipped - 10} more skipped")
    return "\n".join(lines)
