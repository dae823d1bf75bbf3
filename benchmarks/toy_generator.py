"""Toy-world generation speed on one core: median of 5 repeats of 500 samples (64x64, no encoding).

    python benchmarks/toy_generator.py [--n 500] [--repeats 5] [--image-size 64]
Prints `toy samples/s/core: X` (target: >= 1000 at 64x64)."""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: no BLAS threads

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from synseg.data.toy import ToyWorldConfig, generate_sample  # noqa: E402


def main() -> None:
    """Run the benchmark and print the median rate."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # pin to a single core
    config = ToyWorldConfig(image_size=args.image_size)
    generate_sample(0, "train", 0, config)  # warm caches (noise bank, interpolation matrices)
    rates = []
    for r in range(args.repeats):
        start = time.perf_counter()
        for i in range(args.n):
            generate_sample(0, "train", r * args.n + i, config)
        rates.append(args.n / (time.perf_counter() - start))
    print(f"repeats (samples/s): {', '.join(f'{x:.0f}' for x in rates)}")
    print(f"toy samples/s/core: {statistics.median(rates):.0f}")


if __name__ == "__main__":
    main()
