"""Training-step time of SynSeg and of MixReorg, each divided by a full open_clip CLIP training step (both
towers trained, `ClipLoss`, AdamW) on the same backbone and batch, measured in one run as paired,
alternating repeats.

    python benchmarks/step_time.py [--batch-size 64] [--repeats 15] [--backbone toyclip-vit-p8c]
        [--image-size N] [--device cpu|cuda] [--precision fp32|bf16] [--real-config] [--flops]

Ends with `synseg/clip step ratio: X` and `mixreorg/clip step ratio: Y` (medians of the per-triple ratios),
preceded by `synseg training images/s: Z` (batch / median SynSeg step). `--precision bf16` runs each forward
under autocast on the device (backward and optimiser step outside it, as Lightning's bf16-mixed does).
Modules are built as `python -m synseg.train model=<name>` builds them (configs/train.yaml composed with
Hydra, random weights, random decoder init): `--backbone NAME` swaps the stand-in's model name only (the toy
head), `--real-config` uses the real clip group `clip=vit_b16` (ViT-B-16; extract layers 3, 6, 9, CLIPSeg
rd64-refined head size, raw text conditioning: the paper-scale SynSeg of `experiment=synseg_cc12m`).
`--flops` also counts the FLOPs of one step of each method (torch's FlopCounterMode, math attention so every
matmul is seen) and prints `<method> train step GFLOP/image: X`; `--repeats 0` skips the timing."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def build_module(model: str, backbone: str, real_config: bool = False, *overrides: str) -> Any:
    """The LightningModule of configs/model/<model>.yaml as a training run builds it, with random weights
    (no download, no cached stand-in): `clip=vit_b16` with `real_config`, else the stand-in's clip group
    with its model name set to `backbone`. Extra Hydra `overrides` go last."""
    import hydra
    from hydra import compose, initialize_config_dir

    clip = ["clip=vit_b16"] if real_config else [f"clip.model_name={backbone}"]
    random_init = ["model.decoder_init=random"] if model == "synseg" else []
    args = [f"model={model}", *clip, "clip.pretrained=null", *random_init, *overrides]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=args)
    return hydra.utils.instantiate(cfg.model)


def toy_batch(batch_size: int, backbone: str, image_size: int | None) -> dict:
    """One training batch of the shared CaptionDataModule (toy source), at the backbone's input size."""
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


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with every tensor moved to `device` (lists of strings stay as they are)."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def sync(device: torch.device) -> None:
    """Waits for queued device work, so wall-clock times cover it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CPU = torch.device("cpu")


def timed(fn: Callable[[], None], device: torch.device = CPU) -> float:
    """Wall-clock seconds of `fn()`, device work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on the device for `precision=bf16`, else nothing."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def countable_attention() -> Iterator[None]:
    """Math SDPA and no fused MHA fast path, so FlopCounterMode sees every attention matmul (the fused CPU
    kernels have no FLOP formula in torch's registry and would count as 0)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def count_flops(step: Callable[[], None]) -> int:
    """Total FLOPs (multiply-add = 2) of one call of `step`, forward and backward."""
    from torch.utils.flop_counter import FlopCounterMode

    with countable_attention(), FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15, help="timed triples (0: no timing)")
    parser.add_argument("--backbone", default="toyclip-vit-p8c")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--real-config", action="store_true", help="paper-scale head (synseg_cc12m.yaml)")
    parser.add_argument("--flops", action="store_true", help="count FLOPs of one step of each method")
    args = parser.parse_args()
    from open_clip.loss import ClipLoss

    from synseg.models.toyclip import build_open_clip

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    device = torch.device(args.device)
    torch.manual_seed(0)
    batch = to_device(toy_batch(args.batch_size, args.backbone, args.image_size), device)
    if args.real_config and args.backbone != "ViT-B-16":
        parser.error("--real-config is the ViT-B-16 configuration: use it with --backbone ViT-B-16")
    synseg = build_module("synseg", args.backbone, args.real_config).to(device)
    synseg_opt = torch.optim.AdamW(synseg.head.parameters(), lr=1e-4)
    mixreorg = build_module("mixreorg", args.backbone, args.real_config).to(device)
    mixreorg_opt = torch.optim.AdamW(mixreorg.head.parameters(), lr=1e-4)
    # a separate, fully trainable CLIP of the same architecture
    clip = build_open_clip(args.backbone).to(device).train()
    clip_opt = torch.optim.AdamW(clip.parameters(), lr=1e-4)
    clip_loss = ClipLoss()
    amp = args.precision

    def synseg_step() -> None:
        with autocast(device, amp):
            loss = synseg.training_step(batch, 0)
        synseg_opt.zero_grad()
        loss.backward()
        synseg_opt.step()

    def mixreorg_step() -> None:
        with autocast(device, amp):
            loss = mixreorg.training_step(batch, 0)
        mixreorg_opt.zero_grad()
        loss.backward()
        mixreorg_opt.step()

    def clip_step() -> None:
        with autocast(device, amp):
            loss = clip_loss(*clip(batch["images"], batch["caption_tokens"]))
        clip_opt.zero_grad()
        loss.backward()
        clip_opt.step()

    steps = {"synseg": synseg_step, "mixreorg": mixreorg_step, "clip": clip_step}
    pairs = float(batch["category_valid"].sum())
    print(
        f"backbone {args.backbone}, batch {args.batch_size}, {pairs:.0f} (image, category) pairs, "
        f"{args.device} {args.precision}{', real config' if args.real_config else ''}",
        flush=True,
    )
    for _ in range(2):  # warm-up (allocator, text cache, kernels)
        for name, fn in steps.items():
            try:
                timed(fn, device)
            except RuntimeError as err:  # one line naming the method and the setting
                raise SystemExit(
                    f"{name} training step failed on {args.device} {args.precision}: {err}"
                ) from err
    if args.flops:  # after the warm-up: SynSeg's prompt cache is warm, as in steady-state training
        for name, fn in steps.items():
            gflop = count_flops(fn) / 1e9 / args.batch_size
            print(f"{name} train step GFLOP/image: {gflop:.2f}", flush=True)
        head = sum(p.numel() for p in synseg.head.parameters() if p.requires_grad)
        print(f"synseg trainable head parameters: {head}")
    if args.repeats < 1:
        return
    ratios, m_ratios, s_times, m_times, c_times = [], [], [], [], []
    for i in range(args.repeats):
        s, m, c = timed(synseg_step, device), timed(mixreorg_step, device), timed(clip_step, device)
        ratios.append(s / c)
        m_ratios.append(m / c)
        s_times.append(s)
        m_times.append(m)
        c_times.append(c)
        print(
            f"  repeat {i + 1}/{args.repeats}: synseg {s:.3f} s, mixreorg {m:.3f} s, clip {c:.3f} s",
            flush=True,
        )
    print(f"synseg step ms (median): {1000 * statistics.median(s_times):.0f}")
    print(f"mixreorg step ms (median): {1000 * statistics.median(m_times):.0f}")
    print(f"clip step ms (median): {1000 * statistics.median(c_times):.0f}")
    print(f"synseg training images/s: {args.batch_size / statistics.median(s_times):.1f}")
    print(f"synseg/clip step ratio: {statistics.median(ratios):.2f}")
    print(f"mixreorg/clip step ratio: {statistics.median(m_ratios):.2f}")


if __name__ == "__main__":
    main()
