"""The val/test sets of a training run: toy folders or benchmarks under DATA_ROOT, a fixed val subset, every
image on exactly one rank under DDP (never padded, never sharded twice), one clear line for a missing set."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.data import DistributedSampler

from synseg.data.benchmarks.eval_sets import EvalDataError, StridedEvalSampler, fixed_subset, load_eval_sets
from synseg.data.datamodule import CaptionDataModule


def make_dm(root: Path, **val) -> CaptionDataModule:
    dm = CaptionDataModule(
        source="toy", num_workers=0, toy={"root": str(root / "toy")}, tagger={"cache_dir": None}, val=val
    )
    return dm


def test_toy_loaders_read_the_toy_folders(toy_folders: Path) -> None:
    dm = make_dm(toy_folders)
    (loader,) = dm.val_dataloader()
    batch = next(iter(loader))
    assert batch["image"].shape == (24, 3, 64, 64) and batch["mask"].shape == (24, 64, 64)
    assert str(batch["image"].dtype) == "torch.uint8"  # native pixels: the protocol normalises
    assert dm.class_names[0] == "background" and len(dm.class_names) == 11
    assert dm.normalize(batch["image"][:1]).abs().max() < 5 and dm.image_size == 64
    assert [ds.name for ds in dm.eval_sets("test")] == ["toy"]


@pytest.mark.parametrize(("n", "world"), [(11, 2), (5, 3), (2, 4), (24, 2)])
def test_every_image_on_exactly_one_rank(n: int, world: int) -> None:
    data = list(range(n))
    per_rank = [list(StridedEvalSampler(data, world, r)) for r in range(world)]
    assert sorted(i for part in per_rank for i in part) == data  # each once, no padding duplicates
    assert [len(StridedEvalSampler(data, world, r)) for r in range(world)] == [len(p) for p in per_rank]
    # Lightning wraps any sampler that is not a DistributedSampler a second time; this one it leaves alone.
    assert isinstance(StridedEvalSampler(data, world, 0), DistributedSampler)


def test_datamodule_shards_eval_sets_by_rank(toy_folders: Path) -> None:
    dm = make_dm(toy_folders)
    keys = []
    for rank in (0, 1):
        dm.rank, dm.world_size = rank, 2
        (loader,) = dm.test_dataloader()
        keys.append([k for b in loader for k in b["key"]])
    assert len(keys[0]) == len(keys[1]) == 12 and not set(keys[0]) & set(keys[1])


def test_fixed_val_subset_is_the_same_every_time(toy_folders: Path) -> None:
    (full,) = load_eval_sets(["toy"], "val", None, toy_folders / "toy")
    a = fixed_subset(full, 5)
    assert len(a) == 5 and [s.key for s in a.samples] == [s.key for s in fixed_subset(full, 5).samples]
    assert [s.key for s in a.samples] == sorted(s.key for s in a.samples)  # kept in dataset order
    assert fixed_subset(full, 100) is full
    (sub,) = load_eval_sets(["toy"], "val", None, toy_folders / "toy", max_images=7)
    (test,) = load_eval_sets(["toy"], "test", None, toy_folders / "toy", max_images=7)
    assert len(sub) == 7 and len(test) == 24  # the subset is for validation speed; tests use the whole set


def test_missing_benchmark_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match=r"val: voc20 needs DATA_ROOT .*val=none"):
        load_eval_sets(["voc20"], "val", None, tmp_path)
    with pytest.raises(EvalDataError) as err:
        load_eval_sets(["voc20"], "val", str(tmp_path), tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message and "val=none" in message
    with pytest.raises(EvalDataError, match="unknown dataset 'vocc'"):
        load_eval_sets(["vocc"], "val", str(tmp_path), tmp_path)


def test_no_validation(toy_folders: Path) -> None:
    dm = make_dm(toy_folders, datasets=[], test_datasets=[])
    assert dm.val_dataloader() == [] and dm.test_dataloader() == [] and dm.class_names == []
