"""Caption tagging speed: captions per second on one core, uncached.

    python benchmarks/tagging_speed.py [--captions 5000] [--repeats 5]

Prints ``tagging captions/s/core: X`` for the offline pipeline (median of the repeats, single process, cache
bypassed), and the same for the trained pipeline (en_core_web_sm) when it is installed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from synseg.data.train.tagging import CategoryTagger, model_available

_TOY = (
    "circle disc ball square box block triangle wedge star cross plus ring donut hoop heart diamond rhombus "
    "hexagon hex crescent moon"
).split()
_REAL = (
    "dog man woman people car bus traffic_light tree building horse cat bicycle boat beach street "
    "table chair laptop pizza children fire_hydrant mountain river bird flowers kitchen sofa train sky city"
).split()
_ADJ = "red blue green yellow orange purple striped dotted small large old young light_blue wooden".split()
_TEMPLATES = [
    "a photo of {a} {x} next to {b} {y} on a grey backdrop, hd wallpaper",
    "two shapes: {a} {x} and {b} {y}",
    "a clipart of {a} {x} near {b} {y}, stock image",
    "{a} {x} with {b} {y} in front of {c} {z}",
    "stock photo of {a} {x} beside {b} {y} at the top left of the image",
    "vector illustration: {a} {x}, {b} {y} and {c} {z} isolated on white background",
    "the {a} {x} is standing next to {b} {y} while {c} {z} looks on during the evening",
    "aerial view of {a} {x} and {b} {y} in the southwest corner",
]


def make_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` varied toy-like and web-like captions (deterministic)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        nouns = _TOY if i % 2 else _REAL
        words = {k: rng.choice(nouns) + ("s" if rng.random() < 0.3 else "") for k in "xyz"}
        words.update({k: rng.choice(_ADJ) for k in "abc"})
        words = {k: w.replace("_", " ") for k, w in words.items()}
        out.append(rng.choice(_TEMPLATES).format(**words) + f" #{i}")
    return out


def measure(tagger: CategoryTagger, captions: list[str], repeats: int) -> float:
    """Median captions/s of ``tagger.tag_uncached`` over ``repeats`` passes (pipeline built beforehand)."""
    tagger.tag_uncached(captions[:10])  # build the pipeline outside the timing
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        tagger.tag_uncached(captions)
        rates.append(len(captions) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    captions = make_captions(args.captions)
    offline = CategoryTagger(pipeline="offline")
    print(f"pipeline: {offline.pipeline_name} ({len(captions)} captions, median of {args.repeats})")
    print(f"tagging captions/s/core: {measure(offline, captions, args.repeats):.0f}")
    if model_available("en_core_web_sm"):
        trained = CategoryTagger(pipeline="trained")
        print(f"pipeline: {trained.pipeline_name}")
        print(f"tagging captions/s/core (trained): {measure(trained, captions, args.repeats):.0f}")
    else:
        print("trained pipeline: en_core_web_sm not installed, not measured")


if __name__ == "__main__":
    main()
