"""Free-text segmentation of one image: `python -m synseg.segment --ckpt last.ckpt --image cat.jpg
--classes "cat, dog, sofa" --out overlay.png` (or `--model maskclip`, training-free, no checkpoint).

The image goes through the evaluation protocol's dense inference (short side, sliding window) at the model's
training resolution unless given; with `--background-threshold` pixels whose best score is not above it
are background. Writes the image with the prediction blended in and a legend (pixel share per class)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from synseg.errors import UserError, one_line
from synseg.evaluation.loading import load_segmenter, pick_device, preprocess_for, set_templates
from synseg.evaluation.protocol import Protocol, template_set
from synseg.evaluation.runner import Normalizer, dense_scores

BACKGROUND_COLOUR = (0, 0, 0)


def parse_classes(text: str) -> list[str]:
    """ "cat, dog, sofa" -> ["cat", "dog", "sofa"]; empty names or duplicates (ignoring case) are errors."""
    names = [n.strip() for n in text.split(",")]
    if not any(names):
        raise ValueError(f"--classes {text!r}: no class names; give comma-separated words, e.g. 'cat, dog'")
    if not all(names):
        raise ValueError(f"--classes {text!r}: an empty name between commas; expected 'cat, dog, sofa'")
    seen: dict[str, str] = {}
    for n in names:
        if n.lower() in seen:
            raise ValueError(f"--classes: {n!r} given twice; expected each class once")
        seen[n.lower()] = n
    if any(n.lower() == "background" for n in names):
        raise ValueError("--classes: 'background' is not a class here; use --background-threshold")
    return names


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; a clear error for a missing or undecodable file."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as err:
        raise ValueError(f"--image {path}: no such file") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"--image {path}: cannot read it as an image ({type(err).__name__})") from err


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct colours (matplotlib tab20, then hsv)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"] if n <= 20 else colormaps["hsv"].resampled(n)
    cols = [cmap(i if n <= 20 else i / n)[:3] for i in range(n)]
    return (np.array(cols) * 255).round().astype(np.uint8)


def predict(
    module: object, image: np.ndarray, classes: list[str], protocol: Protocol, device: torch.device
) -> np.ndarray:
    """(H, W) int labels: 0 background (with a threshold), then 1..C; without a threshold 0..C-1 -> 1..C."""
    pre = preprocess_for(module)
    set_templates(module, protocol.templates)
    module.set_classes(classes)
    x = Normalizer(pre["mean"], pre["std"], device)(torch.from_numpy(image.copy()).permute(2, 0, 1)[None])
    scores = dense_scores(module.segment, x, protocol)[0]  # (C, H, W)
    best, idx = scores.max(0)
    labels = idx + 1
    if protocol.threshold is not None:
        labels = torch.where(best > protocol.threshold, labels, torch.zeros_like(labels))
    return labels.cpu().numpy()


def render_overlay(
    image: np.ndarray, labels: np.ndarray, classes: list[str], out: Path, alpha: float = 0.5
) -> None:
    """Saves the image beside the blended prediction, with a legend of class colours and pixel shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = np.concatenate([np.array([BACKGROUND_COLOUR], np.uint8), palette(len(classes))])
    blend = image.astype(np.float32)
    fg = labels > 0
    blend[fg] = (1 - alpha) * blend[fg] + alpha * colours[labels[fg]]
    h, w = labels.shape
    share = np.bincount(labels.ravel(), minlength=len(classes) + 1) / labels.size
    scale = 4.0 / max(h, w)
    fig, axes = plt.subplots(
        1, 2, figsize=(2 * w * scale + 2.5, h * scale + 0.6), dpi=max(100, int(max(h, w) / 4))
    )
    for ax, im, title in zip(axes, (image, blend.astype(np.uint8)), ("image", "prediction"), strict=True):
        ax.imshow(im, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    handles = [Patch(color=colours[0] / 255, label=f"background {share[0]:.0%}")]
    handles += [
        Patch(color=colours[i + 1] / 255, label=f"{c} {share[i + 1]:.0%}") for i, c in enumerate(classes)
    ]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.78, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m synseg.segment", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="a SynSeg checkpoint (logs/train/<run>/checkpoints/last.ckpt)")
    src.add_argument("--model", help="a training-free model config instead (maskclip)")
    p.add_argument("--image", required=True, help="any RGB image (PNG, JPEG, ...), any size")
    p.add_argument("--classes", required=True, help='comma-separated free text: "cat, dog, red sofa"')
    p.add_argument("--out", required=True, help="where to write the overlay PNG")
    p.add_argument("--background-threshold", type=float, default=None, help="score at or below: background")
    p.add_argument("--templates", default="simple", help="simple | imagenet7 (prompt templates)")
    p.add_argument("--short-side", type=int, default=None, help="default: the model's training image size")
    p.add_argument("--window", type=int, default=None, help="sliding window (default: the short side)")
    p.add_argument("--stride", type=int, default=None, help="default: window // 2")
    p.add_argument("--mask-out", default=None, help="also write the uint8 label PNG (0 background, 1..C)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--override", action="append", default=[], help="model config override (with --model)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        classes = parse_classes(args.classes)
        image = read_image(args.image)
        device = pick_device(args.device)
        module = load_segmenter(args.ckpt, args.model, device, args.override)
        size = args.short_side or module.synseg_meta.get("image_size") or 448
        window = args.window or size
        protocol = Protocol(
            dataset="free text",
            short_side=size,
            window=window,
            stride=args.stride or max(1, window // 2),
            template_set=args.templates,
            templates=template_set(args.templates),
            has_background=args.background_threshold is not None,
            threshold=args.background_threshold,
            threshold_source="--background-threshold",
        )
        labels = predict(module, image, classes, protocol, device)
    except (ValueError, UserError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    out = Path(args.out)
    render_overlay(image, labels, classes, out)
    if args.mask_out:
        Image.fromarray(labels.astype(np.uint8)).save(args.mask_out)
    share = np.bincount(labels.ravel(), minlength=len(classes) + 1) / labels.size
    print(
        f"{out}: " + ", ".join(f"{n} {s:.1%}" for n, s in zip(["background", *classes], share, strict=True))
    )
    print(f"protocol: {protocol.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
