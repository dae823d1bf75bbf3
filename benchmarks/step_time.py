"""Training-step time of SynSeg and of MixReorg, each divided by a full open_clip CLIP training step (both
towers trained, `ClipLoss`, AdamW) on the same backbone and batch, measured in one run as paired,
alternating repeats.

    python benchmarks/step_time.py [--batch-size 64] [--repeats 15] [--backbone toyclip-vit-p8c]

Ends with `synseg/clip step ratio: X` and `mixreorg/clip step ratio: Y` (medians of the per-triple ratios)."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def toy_batch(batch_size: int, backbone: str, image_size: int | None) -> dict:
    from synseg.data.datamodule import CaptionDataModule

    with tempfile.TemporaryDirectory() as tmp:
        dm = CaptionDataModule(
            source="toy",
            batch_size=batch_size,
            total_steps=1,
            num_workers=0,
            backbone=backbone,
            image_size=image_size,
            toy={"root": tmp},
            tagger={"cache_dir": None},
        )
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--backbone", default="toyclip-vit-p8c")
    parser.add_argument("--image-size", type=int, default=None)
    args = parser.parse_args()
    from open_clip.loss import ClipLoss

    from synseg.lit.mixreorg_module import MixReorgModule
    from synseg.lit.synseg_module import SynSegModule
    from synseg.models.toyclip import build_open_clip

    torch.manual_seed(0)
    batch = toy_batch(args.batch_size, args.backbone, args.image_size)
    synseg = SynSegModule(backbone={"model_name": args.backbone, "pretrained": None})
    synseg_opt = torch.optim.AdamW(synseg.head.parameters(), lr=1e-4)
    mixreorg = MixReorgModule(backbone={"model_name": args.backbone, "pretrained": None})
    mixreorg_opt = torch.optim.AdamW(mixreorg.head.parameters(), lr=1e-4)
    clip = build_open_clip(args.backbone).train()  # a separate, fully trainable CLIP of the same architecture
    clip_opt = torch.optim.AdamW(clip.parameters(), lr=1e-4)
    clip_loss = ClipLoss()

    def synseg_step() -> None:
        loss = synseg.training_step(batch, 0)
        synseg_opt.zero_grad()
        loss.backward()
        synseg_opt.step()

    def mixreorg_step() -> None:
        loss = mixreorg.training_step(batch, 0)
        mixreorg_opt.zero_grad()
        loss.backward()
        mixreorg_opt.step()

    def clip_step() -> None:
        loss = clip_loss(*clip(batch["images"], batch["caption_tokens"]))
        clip_opt.zero_grad()
        loss.backward()
        clip_opt.step()

    for _ in range(2):  # warm-up (allocator, text cache)
        synseg_step()
        mixreorg_step()
        clip_step()
    ratios, m_ratios, s_times, m_times, c_times = [], [], [], [], []
    for _ in range(args.repeats):
        s, m, c = timed(synseg_step), timed(mixreorg_step), timed(clip_step)
        ratios.append(s / c)
        m_ratios.append(m / c)
        s_times.append(s)
        m_times.append(m)
        c_times.append(c)
    pairs = float(batch["category_valid"].sum())
    print(f"backbone {args.backbone}, batch {args.batch_size}, {pairs:.0f} (image, category) pairs")
    print(f"synseg step ms (median): {1000 * statistics.median(s_times):.0f}")
    print(f"mixreorg step ms (median): {1000 * statistics.median(m_times):.0f}")
    print(f"clip step ms (median): {1000 * statistics.median(c_times):.0f}")
    print(f"synseg/clip step ratio: {statistics.median(ratios):.2f}")
    print(f"mixreorg/clip step ratio: {statistics.median(m_ratios):.2f}")


if __name__ == "__main__":
    main()
