"""The segmentation sets a training run validates and tests on: the toy folders or real benchmarks (under
DATA_ROOT), as `EvalDataset`s, with a DDP sampler that gives every image to exactly one rank.

A training run's val/test is the same code path as `make eval` (full-resolution uint8 images, the protocol's
resize and sliding window), so `make eval` on a run's checkpoint reproduces the run's own test numbers."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, DistributedSampler

from synseg.data.benchmarks import EvalDataset, benchmark_names, build_eval_dataset, collate_eval
from synseg.errors import UserError


class EvalDataError(UserError, ValueError):
    """A val/test set that cannot be used; the message is one line meant for the user."""


class StridedEvalSampler(DistributedSampler):
    """Rank r of W evaluates images r, r + W, r + 2W, ...: every image exactly once across ranks, no padding
    duplicates (unlike `DistributedSampler`), in order. A `DistributedSampler` subclass, so Lightning does not
    wrap it a second time."""

    def __init__(self, dataset: Any, num_replicas: int, rank: int) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank}: expected 0..{num_replicas - 1}")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.epoch, self.shuffle, self.drop_last, self.seed = 0, False, False, 0
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def fixed_subset(dataset: EvalDataset, k: int | None, seed: int = 0) -> EvalDataset:
    """The same `k` images at every call (a seeded sample, kept in dataset order); all of them when k is None
    or not smaller than the set."""
    if k is None or k >= len(dataset):
        return dataset
    if k < 1:
        raise EvalDataError(f"val.max_images: {k}; expected a positive number of images or null (all)")
    keep = sorted(random.Random(seed).sample(range(len(dataset)), k))
    return EvalDataset(
        dataset.name,
        dataset.root,
        dataset.classes,
        [dataset.samples[i] for i in keep],
        dataset.has_background,
        dataset.reduce_zero_label,
        dataset.labels,
    )


TOY_SPLIT_SETS: dict[str, str] = {"toy_dev": "dev", "toy_ood": "ood"}  # one folder for val and test


def eval_set_root(name: str, split: str, data_root: str | None, toy_root: str | Path) -> Path:
    """Where a set lives: toy -> <toy_root>/<split>; toy_dev / toy_ood -> <toy_root>/dev|ood; a benchmark
    -> DATA_ROOT (its own layout below)."""
    if name == "toy":
        return Path(toy_root) / split
    if name in TOY_SPLIT_SETS:
        return Path(toy_root) / TOY_SPLIT_SETS[name]
    if not data_root:
        raise EvalDataError(
            f"val: {name} needs DATA_ROOT (val.data_root) to point at the benchmark tree; "
            "set DATA_ROOT=... or train without validation: val=none"
        )
    return Path(str(data_root)).expanduser()


def load_eval_sets(
    names: Sequence[str],
    split: str,
    data_root: str | None,
    toy_root: str | Path,
    max_images: int | None = None,
) -> list[EvalDataset]:
    """One EvalDataset per name, in order; any missing set is an EvalDataError naming it, its root and
    what to do (`val=none` trains without validation)."""
    known = benchmark_names()
    out = []
    for name in names:
        if name not in known:
            raise EvalDataError(f"val: unknown dataset {name!r}; known: {' '.join(known)}")
        root = eval_set_root(name, split, data_root, toy_root)
        try:
            dataset = build_eval_dataset(name, root)
        except (FileNotFoundError, ValueError) as err:
            first = str(err).splitlines()[0]
            raise EvalDataError(
                f"val: {name} ({split}) is not usable under {root}: {first} (or train without validation: "
                "val=none)"
            ) from err
        out.append(fixed_subset(dataset, max_images) if split == "val" else dataset)
    return out


def eval_loader(dataset: EvalDataset, batch_size: int, num_workers: int, rank: int, world: int) -> DataLoader:
    """A loader over `dataset` (collated by `collate_eval`), strided across ranks under DDP."""
    sampler = StridedEvalSampler(dataset, world, rank) if world > 1 else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_eval,
    )
