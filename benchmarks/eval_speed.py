"""Zero-shot evaluation speed at the paper protocol: ms per image for open_clip ViT-B-16 (random init: no
download) on a 448x597 image, short side 448, sliding window 448 / stride 224 (2 windows in one batch),
through MaskCLIP-style dense inference and through a SynSeg head (CLIPSeg rd64 size), median of repeats.

    python benchmarks/eval_speed.py [--classes 20] [--repeats 5] [--height 448 --width 597]
                                    [--threads N] [--pamr] [--skip-synseg]

Ends with `ms/image: X` (MaskCLIP-style dense inference) and `synseg ms/image: Y`."""

from __future__ import annotations

import argparse
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


def ms_per_image(module: torch.nn.Module, image: torch.Tensor, protocol: object, repeats: int) -> list[float]:
    """Wall-clock ms of one image's dense scores (resize, all windows in one batch, upsample), per repeat."""
    from synseg.evaluation.runner import dense_scores

    dense_scores(module.segment, image, protocol)  # warm-up (allocations, kernels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        scores = dense_scores(module.segment, image, protocol)
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
    parser.add_argument("--skip-synseg", action="store_true")
    parser.add_argument(
        "--pamr", action="store_true", help="also time MaskCLIP + PAMR (10 it, TCL dilations)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from synseg.evaluation.protocol import PamrSpec, Protocol
    from synseg.lit.maskclip_module import MaskClipModule
    from synseg.lit.synseg_module import SynSegModule

    torch.manual_seed(0)
    device = torch.device(args.device)
    protocol = Protocol("bench", short_side=448, window=448, stride=224, has_background=False)
    image = torch.randn(1, 3, args.height, args.width, device=device)
    names = [f"class {i}" for i in range(args.classes)]
    print(
        f"ViT-B-16 (random init), image {args.height}x{args.width}, {protocol.describe()}, "
        f"{args.classes} classes, {torch.get_num_threads()} threads, {device}"
    )
    results = {}
    maskclip = MaskClipModule(VIT_B16).to(device).eval()
    maskclip.set_classes(names)  # text embeddings are computed once per dataset: not timed
    results["maskclip"] = ms_per_image(maskclip, image, protocol, args.repeats)
    if args.pamr:
        with_pamr = dataclasses.replace(protocol, pamr=PamrSpec())
        results["maskclip+pamr"] = ms_per_image(maskclip, image, with_pamr, args.repeats)
    del maskclip
    if not args.skip_synseg:
        synseg = SynSegModule(VIT_B16, HEAD, eval_chunk=64).to(device).eval()
        synseg.set_classes(names)
        results["synseg"] = ms_per_image(synseg, image, protocol, args.repeats)
    for name, times in results.items():
        print(f"{name}: " + " ".join(f"{t:.0f}" for t in times) + " ms")
    print(f"ms/image: {statistics.median(results['maskclip']):.0f}")
    if "synseg" in results:
        print(f"synseg ms/image: {statistics.median(results['synseg']):.0f}")


if __name__ == "__main__":
    main()
