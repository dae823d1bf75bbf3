"""Data throughput: toy generator, caption tagging, and DataModule delivery vs training-step consumption;
with `--real`, the per-sample CPU cost of the real-data path instead.

    python benchmarks/data_throughput.py [--batch-size 64] [--steps 20] [--workers 2]
    python benchmarks/data_throughput.py --real [--real-n 400] [--real-size 500 375] [--repeats 3]

Ends with the lines `toy samples/s/core: X`, `tagging captions/s/core: X` and `loader/step ratio: X`.
Generation and tagging run in this single process (one core). The ratio divides the samples/s the
DataModule's loader delivers (its own worker processes, measured alone) by the samples/s one training step
of the stand-in CLIP consumes (open_clip ClipLoss, AdamW), both measured in this run; medians of repeats.

`--real` writes CC-like JPEGs in memory (procedural photo-like content, 500x375, quality 90) with web-like
captions over the category vocabulary, then times each stage of what the loader does per sample, in this
process on one core (one torch thread): decode (`records.decode_record`), resize + centre crop to 224 alone
(`ImageTransform.resize_crop`) and with normalisation (the whole `ImageTransform` of ViT-B-16), tokenise
(open_clip's ViT-B-16 tokenizer), tag (`CategoryTagger`, uncached: a first epoch), and the whole chain per
batch. It prints `real <stage> samples/s/core: X` lines
(medians of `--repeats`); `real pipeline samples/s/core` is what sizes the loader CPUs of a GPU."""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tagging_speed import make_captions  # noqa: E402

from synseg.data.toy import generate_sample  # noqa: E402
from synseg.data.train.tagging import CategoryTagger  # noqa: E402


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


# ---- the real-size path ---------------------------------------------------------------------------------
_PLACES = (
    "on the beach|in the city|at the park|in a modern kitchen|on a wooden table|in the snow|at sunset|"
    "on the street|in the living room|near the river|in the forest|at the airport|on a white background"
).split("|")
_ADJS = "red blue green old young small large vintage beautiful wooden happy modern white black".split()
_CAPTION_TEMPLATES = (
    "a {a} {x} next to a {y} {p}",
    "{a} {x} and {y} {p} .",
    "stock photo of a {a} {x} with a {y}",
    "the {x} is sitting on the {y} {p}, royalty free image",
    "close up of a {a} {x}",
    "{x} , {y} and {z} {p}",
    "a {a} {x} in front of a {b} {y} {p} in the summer of 2014",
    "person holding a {x} {p}",
    "illustration of a {a} {x} isolated on white background",
    "aerial view of {x} and {y} {p}",
)


def real_vocab() -> list[str]:
    """Category phrases of the benchmark part of the tagger's vocabulary (the toy world's nouns left out)."""
    from synseg.data.train.tagging import DEFAULT_VOCAB_PATH

    words, keep = [], False
    for line in DEFAULT_VOCAB_PATH.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ---"):
            keep = "toy world" not in line
            continue
        phrase = " ".join(line.split("#", 1)[0].lower().split())
        if keep and phrase:
            words.append(phrase)
    return list(dict.fromkeys(words))


def make_caption(rng: random.Random, vocab: list[str]) -> str:
    """A web-like caption naming 1-3 vocabulary categories with fillers, adjectives and a place."""
    x, y, z = rng.sample(vocab, 3)
    a, b = rng.sample(_ADJS, 2)
    return rng.choice(_CAPTION_TEMPLATES).format(a=a, b=b, x=x, y=y, z=z, p=rng.choice(_PLACES))


def make_jpeg(rng: np.random.Generator, size: tuple[int, int], quality: int = 90) -> bytes:
    """A photo-like JPEG: a smooth two-colour gradient, blurred shapes, sharp shapes, sensor-like noise.

    Entropy-coded size (and so decode cost) depends on content; this lands near typical web photos."""
    from PIL import Image, ImageDraw, ImageFilter

    w, h = size
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, h)[:, None, None] * np.ones((1, w, 1))
    img = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8))
    for blur in (True, False):
        layer = img.copy()
        draw = ImageDraw.Draw(layer)
        for _ in range(int(rng.integers(4, 10))):
            x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
            x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            shape = int(rng.integers(3))
            if shape == 0:
                draw.ellipse((x0, y0, x1, y1), fill=fill)
            elif shape == 1:
                draw.rectangle((x0, y0, x1, y1), fill=fill)
            else:
                pts = [(int(rng.integers(x0, x1)), int(rng.integers(y0, y1))) for _ in range(5)]
                draw.polygon(pts, fill=fill)
        img = layer.filter(ImageFilter.GaussianBlur(6)) if blur else layer
    arr = np.asarray(img).astype(np.int16) + rng.normal(0.0, 8.0, (h, w, 3)).astype(np.int16)
    buf = io.BytesIO()
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_records(n: int, size: tuple[int, int], seed: int = 0) -> list[dict]:
    """`n` webdataset-like records {"__key__", "jpg", "txt"} of CC-like JPEGs and captions."""
    rng, crng, vocab = np.random.default_rng(seed), random.Random(seed), real_vocab()
    return [
        {"__key__": f"{i:08d}", "jpg": make_jpeg(rng, size), "txt": make_caption(crng, vocab).encode()}
        for i in range(n)
    ]


def rate(n: int, fn: Callable[[], object], repeats: int) -> float:
    """Median samples/s of `fn()` processing `n` samples, over `repeats` runs."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def real_path(n: int, size: tuple[int, int], batch_size: int, repeats: int) -> None:
    """Prints samples/s on one core of each stage of the real-data loader, and of the whole chain."""
    import open_clip

    from synseg.clip_configs import preprocess_cfg
    from synseg.data.train.records import SkipCounter, decode_record
    from synseg.data.train.tagging import CategoryTagger
    from synseg.data.transforms import normalize_for

    torch.set_num_threads(1)  # per core
    start = time.perf_counter()
    records = make_records(n, size)
    kb = statistics.mean(len(r["jpg"]) for r in records) / 1024
    made = time.perf_counter() - start
    print(f"real data: {n} JPEGs {size[0]}x{size[1]} q90, mean {kb:.1f} KB (made in {made:.0f} s)")
    print(f"  e.g. caption: {records[0]['txt'].decode()!r}", flush=True)
    transform = normalize_for(preprocess_cfg("ViT-B-16", None))
    tokenizer = open_clip.get_tokenizer("ViT-B-16")
    tagger = CategoryTagger(cache_dir=None)
    skips = SkipCounter()
    batches = [records[i : i + batch_size] for i in range(0, n, batch_size)]
    decoded = [decode_record(r, skips) for r in records]
    images, captions = [d[0] for d in decoded], [d[1] for d in decoded]
    tagger.tag_uncached(captions[:8])  # lazy pipeline set-up out of the timing
    tags = tagger.tag_uncached(captions)
    print(f"  tagger {tagger.pipeline_name}: {statistics.mean(map(len, tags)):.2f} categories/caption")

    def pipeline() -> None:
        for batch in batches:
            out = [decode_record(r, skips) for r in batch]
            caps = [o[1] for o in out]
            transform([o[0] for o in out])
            tokenizer(caps)
            tagger.tag_uncached(caps)

    stages: dict[str, Callable[[], object]] = {
        "decode": lambda: [decode_record(r, skips) for r in records],
        "resize+crop": lambda: [transform.resize_crop(im) for im in images],
        "resize+normalise": lambda: [transform(images[i : i + batch_size]) for i in range(0, n, batch_size)],
        "tokenise": lambda: [tokenizer(captions[i : i + batch_size]) for i in range(0, n, batch_size)],
        "tagging": lambda: [
            tagger.tag_uncached(captions[i : i + batch_size]) for i in range(0, n, batch_size)
        ],
        "pipeline": pipeline,
    }
    for name, fn in stages.items():
        print(f"real {name} samples/s/core: {rate(n, fn, repeats):.0f}", flush=True)
    if skips.total():
        print(f"real skipped samples: {skips.total()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--real", action="store_true", help="time the real-size data path instead")
    parser.add_argument("--real-n", type=int, default=400, help="JPEGs to make and time")
    parser.add_argument("--real-size", type=int, nargs=2, default=(500, 375), metavar=("W", "H"))
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per real-path stage")
    args = parser.parse_args()
    if args.real:
        real_path(args.real_n, tuple(args.real_size), args.batch_size, args.repeats)
        return
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
