"""Data throughput: toy generator, caption tagging, and DataModule delivery vs training-step consumption.

    python benchmarks/data_throughput.py [--batch-size 64] [--steps 20] [--workers 2]

Ends with the lines `toy samples/s/core: X`, `tagging captions/s/core: X` and `loader/step ratio: X`.
Generation and tagging run in this single process (one core). The ratio divides the samples/s the
DataModule's loader delivers (its own worker processes, measured alone) by the samples/s one training step
of the stand-in CLIP consumes (open_clip ClipLoss, AdamW), both measured in this run; medians of repeats."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from tagging_speed import make_captions  # noqa: E402

from synseg.data.tagging import CategoryTagger  # noqa: E402
from synseg.data.toy import generate_sample  # noqa: E402


def toy_rate(n: int = 500, repeats: int = 5) -> float:
    rates = []
    for r in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            generate_sample(0, "train", r * n + i)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def tagging_rate(n: int = 5000, repeats: int = 5) -> float:
    tagger = CategoryTagger(pipeline="offline", cache_dir=None)
    captions = make_captions(n)
    tagger.tag_uncached(captions[:10])
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        tagger.tag_uncached(captions)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def loader_rate(batch_size: int, steps: int, workers: int, root: Path) -> tuple[float, dict]:
    from synseg.data.datamodule import CaptionDataModule

    dm = CaptionDataModule(
        source="toy",
        batch_size=batch_size,
        total_steps=steps + 2,
        num_workers=workers,
        toy={"root": str(root)},
        tagger={"cache_dir": None},
    )
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    first = next(it)  # worker start-up excluded
    next(it)
    times = []
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return batch_size / statistics.median(times), first


def step_rate(batch: dict, steps: int) -> float:
    from open_clip.loss import ClipLoss

    from synseg.models.registry import create_model

    model = create_model("toyclip")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = ClipLoss()
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        loss = loss_fn(*model(batch["images"], batch["caption_tokens"]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return batch["images"].shape[0] / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        loader, batch = loader_rate(args.batch_size, args.steps, args.workers, Path(tmp))
    step = step_rate(batch, max(5, args.steps // 2))
    toy = toy_rate()
    tagging = tagging_rate()
    print(f"loader samples/s ({args.workers} workers): {loader:.0f}")
    print(f"stand-in CLIP training step samples/s (batch {args.batch_size}): {step:.0f}")
    print(f"toy samples/s/core: {toy:.0f}")
    print(f"tagging captions/s/core: {tagging:.0f}")
    print(f"loader/step ratio: {loader / step:.2f}")


if __name__ == "__main__":
    main()
