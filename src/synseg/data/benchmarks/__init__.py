"""Segmentation benchmarks for evaluation: their layouts under DATA_ROOT, the `folder`/toy layout, the
datasets of full-resolution (image, mask) pairs, and the val/test sets of a training run."""

from synseg.data.benchmarks.datasets import (
    BENCHMARKS,
    EvalDataset,
    benchmark_classes,
    benchmark_names,
    benchmark_spec,
    build_eval_dataset,
    collate_eval,
)

__all__ = [
    "BENCHMARKS",
    "EvalDataset",
    "benchmark_classes",
    "benchmark_names",
    "benchmark_spec",
    "build_eval_dataset",
    "collate_eval",
]
