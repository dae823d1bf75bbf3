"""Zero-shot evaluation speed at the paper protocol: ms per image for open_clip ViT-B-16 (random init: no
download) on a 448x597 image, short side 448, sliding window 448 / stride 224 (2 windows in one batch),
through MaskCLIP-style dense inference and through a SynSeg head (CLIPSeg rd64 size), median of repeats.

    python benchmarks/eval_speed.py [--classes 20] [--repeats 5] [--height 448 --width 597]
                                    [--threads N] [--pamr] [--skip-synseg] [--device cpu|cuda]
                                    [--precision fp32|bf16] [--backbone NAME --short-side S]

Ends with `ms/image: X` (MaskCLIP-style dense inference) and `synseg ms/image: Y`. `make eval` runs in fp32;
`--precision bf16` times the same under bf16 autocast. `--backbone toyclip-vit-p8c --short-side 64` is a
seconds-long smoke run of the same code (window = short side, stride = half of it)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VIT_B16 = {
    "model_name": "ViT-B-16",
    "pretrained": None,
    "extract_layers": [3, 6, 9],
    "dense_mode": "maskclip",
}
HEAD = {"reduce_dim": 64, "n_heads": 4, "ffn_dim": 2048, "prior": False, "complex_upsample": True}


def backbone_cfg(name: str) -> dict:
    """ViT-B-16 at the paper's layers, or another open_clip model (e.g. the stand-in) at its last three."""
    if name == "ViT-B-16":
        return dict(VIT_B16)
    from synseg.models.toyclip import build_open_clip

    n_layers = len(build_open_clip(name).visual.transformer.resblocks)
    return {**VIT_B16, "model_name": name, "extract_layers": [n_layers - 3, n_layers - 2, n_layers - 1]}


def head_cfg(name: str) -> dict:
    """CLIPSeg rd64-refined's size for ViT-B-16; the default head otherwise (the refined upsampling is
    made for patch 16)."""
    return dict(HEAD) if name == "ViT-B-16" else {}


def sync(device: torch.device) -> None:
    """Waits for queued device work so wall-clock times cover it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ms_per_image(
    model: torch.nn.Module,
    image: torch.Tensor,
    protocol: object,
    repeats: int,
    precision: str = "fp32",
) -> list[float]:
    """Wall-clock ms of one image's dense scores (resize, all windows in one batch, upsample) through a
    `Segmenter`'s `class_scores` (what `make eval` runs), per repeat; device work included; bf16 autocast
    with `precision="bf16"`."""
    from synseg.evaluation.runner import dense_scores

    def amp() -> contextlib.AbstractContextManager:
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=image.device.type, dtype=torch.bfloat16)

    with amp():
        dense_scores(model.class_scores, image, protocol)  # warm-up (allocations, kernels)
    times = []
    for _ in range(repeats):
        sync(image.device)
        start = time.perf_counter()
        with amp():
            scores = dense_scores(model.class_scores, image, protocol)
        sync(image.device)
        times.append(1000 * (time.perf_counter() - start))
    assert scores.shape[-2:] == image.shape[-2:]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=20, help="foreground classes (VOC: 20)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--height", type=int, default=448)
    parser.add_argument("--width", type=int, default=597)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--backbone", default="ViT-B-16", help="open_clip model (random init)")
    parser.add_argument("--short-side", type=int, default=448, help="protocol short side = window")
    parser.add_argument("--skip-synseg", action="store_true")
    parser.add_argument(
        "--pamr", action="store_true", help="also time MaskCLIP + PAMR (10 it, TCL dilations)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from synseg.evaluation.protocol import PamrSpec, Protocol
    from synseg.models.segmenter import Segmenter

    torch.manual_seed(0)
    device = torch.device(args.device)
    side = args.short_side
    protocol = Protocol("bench", short_side=side, window=side, stride=side // 2, has_background=False)
    image = torch.randn(1, 3, args.height, args.width, device=device)
    names = [f"class {i}" for i in range(args.classes)]
    print(
        f"{args.backbone} (random init), image {args.height}x{args.width}, {protocol.describe()}, "
        f"{args.classes} classes, {torch.get_num_threads()} threads, {device} {args.precision}"
    )
    results = {}
    backbone = backbone_cfg(args.backbone)
    maskclip = Segmenter("maskclip", backbone).to(device).eval()
    maskclip.set_classes(names)  # text embeddings are computed once per dataset: not timed
    results["maskclip"] = ms_per_image(maskclip, image, protocol, args.repeats, args.precision)
    if args.pamr:
        with_pamr = dataclasses.replace(protocol, pamr=PamrSpec())
        results["maskclip+pamr"] = ms_per_image(maskclip, image, with_pamr, args.repeats, args.precision)
    del maskclip
    if not args.skip_synseg:
        synseg = Segmenter("synseg", backbone, head_cfg(args.backbone), eval_chunk=64).to(device).eval()
        synseg.set_classes(names)
        results["synseg"] = ms_per_image(synseg, image, protocol, args.repeats, args.precision)
    for name, times in results.items():
        print(f"{name}: " + " ".join(f"{t:.0f}" for t in times) + " ms")
    print(f"ms/image: {statistics.median(results['maskclip']):.0f}")
    if "synseg" in results:
        print(f"synseg ms/image: {statistics.median(results['synseg']):.0f}")


if __name__ == "__main__":
    main()
