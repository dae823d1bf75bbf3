"""Figures of a compare report: `compare.png` (mIoU bars with std error bars coloured by supervision, the
reference levels, a per-class IoU heat map) and `gallery.png` (the same test images: ground truth beside each
method's prediction, from each method's first successful run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

SUPERVISION_COLOURS = {"none": "#9e9e9e", "dense-pretrained": "#ef6c00", "captions": "#1565c0"}


def plain_dict(node: Any) -> dict[str, Any]:
    """A config node as a plain dict ({} for None)."""
    from omegaconf import OmegaConf

    return dict(OmegaConf.to_container(node, resolve=True)) if node is not None else {}


def plot_compare(results: dict[str, Any], path: Path) -> None:
    methods = results["methods"]
    names = list(methods)
    classes = sorted({c for m in methods.values() for c in m["per_class"]})
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(6 + 0.6 * len(classes), 4.2), width_ratios=[1, 1.6])
    means = [methods[n]["mIoU_mean"] for n in names]
    stds = [methods[n]["mIoU_std"] for n in names]
    colours = [SUPERVISION_COLOURS[methods[n]["supervision"]] for n in names]
    ax.bar(names, np.nan_to_num(means), yerr=np.nan_to_num(stds), color=colours, capsize=4)
    for i, name in enumerate(names):
        ax.scatter(
            [i] * len(methods[name]["mIoU_per_seed"]), methods[name]["mIoU_per_seed"], s=10, c="k", zorder=3
        )
    for (ref, v), style in zip(results["references"].items(), ("--", ":", "-.", (0, (1, 3))), strict=False):
        ax.axhline(v, color="k", lw=0.8, ls=style, label=f"{ref} {v:.2f}")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in SUPERVISION_COLOURS.values()]
    ax.legend(
        handles + ax.get_legend_handles_labels()[0],
        [*SUPERVISION_COLOURS, *ax.get_legend_handles_labels()[1]],
        fontsize=6,
    )
    ax.set_ylabel(f"{results['dataset']} test mIoU (mean ± std over seeds)")
    ax.tick_params(axis="x", rotation=30)
    grid = np.array([[methods[n]["per_class"].get(c, np.nan) for c in classes] for n in names], dtype=float)
    im = hx.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    hx.set_xticks(range(len(classes)), classes, rotation=60, fontsize=7)
    hx.set_yticks(range(len(names)), names, fontsize=8)
    for (i, j), v in np.ndenumerate(grid):
        if not np.isnan(v):
            hx.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.5 else "k")
    fig.colorbar(im, ax=hx, fraction=0.03, label="IoU")
    hx.set_title("per-class IoU (mean over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_run_model(run_dir: Path) -> tuple[Any, dict]:
    """The Segmenter a run exported (`model.synseg`, the weights and threshold its test used), with the run's
    resolved config (for its data and protocol)."""
    from omegaconf import OmegaConf

    from synseg.models import Segmenter

    return Segmenter.load(run_dir / "model.synseg"), OmegaConf.load(run_dir / "config.yaml")


def plot_gallery(results: dict[str, Any], path: Path, n_images: int = 6) -> None:
    """The first `n_images` test images of the report's dataset: ground truth beside each method's
    prediction (each at its run's test threshold), scored under the run's evaluation protocol."""
    from synseg.data.benchmarks.eval_sets import load_eval_sets
    from synseg.evaluation.protocol import build_protocol
    from synseg.evaluation.runner import dense_scores

    runs = {n: Path(m["run_dirs"][0]) for n, m in results["methods"].items() if m["run_dirs"]}
    if not runs:
        return
    preds, data, name_ds = {}, None, results["dataset"]
    for name, run_dir in runs.items():
        model, cfg = load_run_model(run_dir)
        if data is None:
            (ds,) = load_eval_sets([name_ds], "test", cfg.val.get("data_root"), cfg.data.toy.root)
            data = [ds[i] for i in range(min(n_images, len(ds)))]
            data = [d for d in data if "skip" not in d]
            classes, has_bg = list(ds.classes), ds.has_background
            mean, std = model.mean, model.std
            protocol_cfg = plain_dict(cfg.get("protocol"))
            image_size = int(cfg.data.image_size or 224)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        threshold = metrics.get(f"test/{name_ds}/threshold", 0.5)
        protocol = build_protocol(name_ds, has_bg, protocol_cfg, image_size)
        model.set_classes(classes[1:] if has_bg else classes, list(protocol.templates))
        labels = []
        with torch.no_grad():
            for d in data:
                x = (d["image"][None].float() / 255.0 - mean) / std
                scores = dense_scores(model.class_scores, x, protocol)[0]  # (C_fg, H, W)
                best, idx = scores.max(0)
                labels.append(torch.where(best > threshold, idx + 1, 0) if has_bg else idx)
        preds[name] = labels
    from synseg.segment import BACKGROUND_COLOUR, palette  # the overlay CLI's colours: one look everywhere

    fg = palette(len(classes) - has_bg)
    ignore = np.array([[255, 255, 255]], np.uint8)  # label 255
    colours = np.concatenate([np.array([BACKGROUND_COLOUR], np.uint8)[:has_bg], fg, ignore])

    def show(ax: Any, labels: np.ndarray) -> None:
        ax.imshow(colours[np.where(labels == 255, len(classes), labels)])

    cols = ["image", "ground truth", *preds]
    fig, axes = plt.subplots(len(data), len(cols), figsize=(1.6 * len(cols), 1.6 * len(data)), squeeze=False)
    for i, d in enumerate(data):
        axes[i, 0].imshow(d["image"].permute(1, 2, 0).numpy())  # uint8 (H, W, 3) at native size
        show(axes[i, 1], d["mask"].numpy())
        for j, name in enumerate(preds, start=2):
            show(axes[i, j], preds[name][i].numpy())
    for j, title in enumerate(cols):
        axes[0, j].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[k] / 255) for k in range(len(classes))]
    fig.legend(handles, classes, loc="lower center", ncol=min(len(classes), 6), fontsize=6)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
