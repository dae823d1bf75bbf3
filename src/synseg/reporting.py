"""Reference levels every toy report shows, and the end-of-run summary table.

References: all-background prediction and the patch-grid ceiling (from the test masks), the
dense-pretrained decoder before MCCL and the training-free dense CLIP (from their cached build metrics)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DIAGNOSTICS = ("fg_pixel_acc", "image_top1", "act_in", "act_bg", "act_absent", "threshold")


def mask_levels(test_root: str | Path, patch: int) -> dict[str, float]:
    """All-background mIoU and the resolution ceiling of a `patch` grid on a folder's masks."""
    from synseg.data.benchmarks.segfolder import read_classes
    from synseg.data.toy.reference import all_background_miou, patch_grid_ceiling

    root = Path(test_root)
    n_classes = len(read_classes(root / "classes.txt"))
    masks = [np.asarray(Image.open(p)) for p in sorted((root / "masks").glob("*.png"))]
    return {
        "all_background": all_background_miou(masks, n_classes),
        "patch_grid_ceiling": patch_grid_ceiling(masks, patch, n_classes),
    }


def cached_level(path: str | Path, key: str = "test/toy/mIoU") -> float | None:
    """A metric from a cached build's metrics json, or None when it was not built."""
    path = Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(key)


def reference_levels(data_dir: str | Path, test_root: str | Path, patch: int) -> dict[str, float | None]:
    """Every reference level that is available (None: not built yet)."""
    data_dir = Path(data_dir)
    levels: dict[str, float | None] = dict(mask_levels(test_root, patch))
    levels["dense_pretrained_decoder"] = cached_level(data_dir / "toyclip" / "synseg_head_dense.metrics.json")
    levels["training_free_dense_clip"] = cached_level(data_dir / "toyclip" / "maskclip.metrics.json")
    return levels


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def summary_table(
    name: str, metrics: dict[str, Any], references: dict[str, float | None], dataset: str = "toy"
) -> str:
    """A plain-text summary: mIoU, diagnostics, per-class IoU, reference levels."""
    p = f"test/{dataset}"
    lines = [f"== {name}: test/{dataset} ==", f"  mIoU                 {_fmt(metrics.get(f'{p}/mIoU'))}"]
    lines += [f"  {d:<20} {_fmt(metrics.get(f'{p}/{d}'))}" for d in DIAGNOSTICS]
    act_in, act_bg = metrics.get(f"{p}/act_in"), metrics.get(f"{p}/act_bg")
    if act_in is not None and act_bg is not None:
        lines.append(f"  maps inverted        {'YES' if act_in <= act_bg else 'no'} (act_in vs act_bg)")
    per_class = {k.rsplit("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{p}/per_class/")}
    if per_class:
        lines.append("  per-class IoU        " + "  ".join(f"{k} {_fmt(v)}" for k, v in per_class.items()))
    lines.append("  reference levels (test mIoU):")
    lines += [f"    {k:<28} {_fmt(v)}" for k, v in references.items()]
    return "\n".join(lines)
