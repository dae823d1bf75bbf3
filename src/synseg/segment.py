"""Free-text segmentation of one image: `python -m synseg.segment --ckpt last.ckpt --image cat.jpg
--classes "cat, dog, sofa" --out overlay.png` (or an exported model file, or `--model maskclip|naclip`).

The image goes through the evaluation protocol's dense inference (short side, sliding window) at the model's
training resolution unless given. Pixels whose best score is not above the background threshold are
background: the model's own (selected on val) unless `--threshold` overrides it; `--no-background` (or a
model without one) gives every pixel a class. Writes the image with the prediction blended in and a legend
(pixel share per class)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from synseg.errors import UserError, one_line
from synseg.evaluation.loading import clip_config, load_model, pick_device
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
        raise ValueError("--classes: 'background' is not a class here; it is decided by --threshold")
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


def predict(segmenter: Any, image: np.ndarray, classes: list[str], protocol: Protocol) -> np.ndarray:
    """(H, W) int labels: 0 background (with a threshold), then 1..C; without a threshold 0..C-1 -> 1..C."""
    segmenter.set_classes(classes, protocol.templates)
    mean, std = segmenter.mean.flatten().tolist(), segmenter.std.flatten().tolist()
    x = Normalizer(mean, std, segmenter.device)(torch.from_numpy(image.copy()).permute(2, 0, 1)[None])
    scores = dense_scores(segmenter.class_scores, x, protocol)[0]  # (C, H, W)
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
    src.add_argument(
        "--ckpt", help="a run's checkpoint (logs/train/<run>/checkpoints/last.ckpt) or model.synseg"
    )
    src.add_argument("--model", help="a training-free model instead (maskclip, naclip), on the stand-in CLIP")
    p.add_argument("--image", required=True, help="any RGB image (PNG, JPEG, ...), any size")
    p.add_argument("--classes", required=True, help='comma-separated free text: "cat, dog, red sofa"')
    p.add_argument("--out", required=True, help="where to write the overlay PNG")
    bg = p.add_mutually_exclusive_group()
    bg.add_argument(
        "--threshold", type=float, default=None, help="background threshold (default: the model's)"
    )
    bg.add_argument("--no-background", action="store_true", help="every pixel gets one of the classes")
    p.add_argument("--templates", default="simple", help="simple | imagenet7 (prompt templates)")
    p.add_argument("--short-side", type=int, default=None, help="default: the model's training image size")
    p.add_argument("--window", type=int, default=None, help="sliding window (default: the short side)")
    p.add_argument("--stride", type=int, default=None, help="default: window // 2")
    p.add_argument("--mask-out", default=None, help="also write the uint8 label PNG (0 background, 1..C)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--clip", default="toyclip", help="the backbone of --model: configs/clip/<name>.yaml")
    p.add_argument(
        "--pretrained", default=None, help="override the backbone weights of --model (none: random)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        classes = parse_classes(args.classes)
        image = read_image(args.image)
        device = pick_device(args.device)
        clip = clip_config(args.clip) if args.model else None
        if clip is not None and args.pretrained is not None:
            clip["pretrained"] = None if args.pretrained.lower() == "none" else args.pretrained
        segmenter = load_model(args.ckpt, args.model, clip, device)
        size = args.short_side or segmenter.image_size or 448
        window = args.window or size
        if args.no_background:
            threshold, source = None, "--no-background"
        elif args.threshold is not None:
            threshold, source = args.threshold, "--threshold"
        else:
            threshold, source = segmenter.threshold, "the model's (selected on val)"
        protocol = Protocol(
            dataset="free text",
            short_side=size,
            window=window,
            stride=args.stride or max(1, window // 2),
            template_set=args.templates,
            templates=template_set(args.templates),
            has_background=threshold is not None,
            threshold=threshold,
            threshold_source=source,
        )
        labels = predict(segmenter, image, classes, protocol)
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
