"""The shared CaptionDataModule: batch contents, rank x worker sharding, equal batch counts, exact resume."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from synseg.data.datamodule import CaptionDataModule


def make_dm(
    root: Path,
    source: str = "toy",
    rank: int = 0,
    world: int = 2,
    workers: int = 2,
    steps: int = 4,
    batch: int = 3,
    **kw,
) -> CaptionDataModule:
    dm = CaptionDataModule(
        source=source,
        batch_size=batch,
        total_steps=steps,
        num_workers=workers,
        toy={"root": str(root / "toy")},
        tagger={"cache_dir": None},
        eval_batch_size=8,
        **kw,
    )
    dm.setup("fit")
    dm.rank, dm.world_size = rank, world
    return dm


def collect(dm: CaptionDataModule) -> list[dict]:
    return list(dm.train_dataloader())


@pytest.mark.parametrize("source", ["shards", "hf"])
def test_two_ranks_two_workers_cover_every_shard_sample_once(
    source: str, toy_shards: Path, toy_folders: Path
) -> None:
    # 48 samples in 8 shards; 2 ranks x 2 workers x B=3 x 8 steps = 48: each sample exactly once.
    glob = str(toy_shards / "*.tar")
    cfg = (
        {"shards": {"urls": glob, "shuffle_buffer": 0}}
        if source == "shards"
        else {"hf": {"path": "webdataset", "data_files": glob, "shuffle_buffer": 0}}
    )
    per_rank = [collect(make_dm(toy_folders, source, rank=r, steps=8, **cfg)) for r in (0, 1)]
    assert [len(b) for b in per_rank] == [8, 8]  # equal batch counts on every rank
    keys = [k for batches in per_rank for b in batches for k in b["keys"]]
    assert len(keys) == 48 and len(set(keys)) == 48


def test_toy_stream_is_a_function_of_seed_and_global_index(toy_folders: Path) -> None:
    from synseg.data.toy import generate_sample

    per_rank = [collect(make_dm(toy_folders, "toy", rank=r, steps=4)) for r in (0, 1)]
    assert [len(b) for b in per_rank] == [4, 4]
    for r, batches in enumerate(per_rank):
        for step, b in enumerate(batches):  # worker round robin keeps step order
            first = (step * 2 + r) * 3
            assert b["keys"] == [f"train-{first + i:09d}" for i in range(3)]
    expected = generate_sample(0, "train", 7).caption
    assert per_rank[0][1]["captions"][1] == expected  # step 1, rank 0, i=1 -> (1*2+0)*3+1 = 7
    keys = [k for batches in per_rank for b in batches for k in b["keys"]]
    assert len(set(keys)) == 24 == len(keys)


def test_resume_continues_the_toy_stream_exactly(toy_folders: Path) -> None:
    full = collect(make_dm(toy_folders, "toy", world=1, workers=0, steps=6))
    dm = make_dm(toy_folders, "toy", world=1, workers=2, steps=6)
    dm.load_state_dict({"global_step": 4})
    tail = collect(dm)
    assert [b["keys"] for b in tail] == [b["keys"] for b in full[4:]]
    assert torch.equal(tail[0]["images"], full[4]["images"])


def test_batch_contents(toy_folders: Path) -> None:
    b = collect(make_dm(toy_folders, "toy", world=1, workers=0, steps=1, batch=5))[0]
    assert b["images"].shape == (5, 3, 64, 64) and b["images"].dtype == torch.float32
    assert b["caption_tokens"].shape == (5, 32)
    assert b["category_tokens"].shape == (5, 4, 32) and b["category_valid"].shape == (5, 4)
    for cats, valid, toks in zip(b["categories"], b["category_valid"], b["category_tokens"], strict=True):
        assert [c != "" for c in cats] == valid.tolist()
        assert (toks[valid].abs().sum(-1) > 0).all() and (toks[~valid] == 0).all()
    assert b["image_labels"].shape == (5, 10)
    assert -3 < float(b["images"].mean()) < 3  # normalised with the backbone's mean/std


def test_corrupt_samples_are_counted_in_batches(tmp_path: Path, toy_folders: Path) -> None:
    from tests.test_data_sources import _jpeg, write_tar

    members = []
    for i in range(12):
        members += [(f"{i:03d}.jpg", b"garbage" if i % 4 == 0 else _jpeg(i)), (f"{i:03d}.txt", b"a red disc")]
    write_tar(tmp_path / "c-000000.tar", members)
    dm = make_dm(
        toy_folders,
        "shards",
        world=1,
        workers=0,
        steps=3,
        batch=3,
        shards={"urls": str(tmp_path / "*.tar"), "shuffle_buffer": 0},
    )
    batches = collect(dm)
    assert all(len(b["keys"]) == 3 for b in batches)
    total = Counter()
    for b in batches:
        total.update(b["skipped"])
    assert total["image_undecodable"] == 3  # keys 000, 004, 008 skipped, counted once each


def test_val_and_test_loaders_read_the_toy_folders(toy_folders: Path) -> None:
    dm = make_dm(toy_folders, "toy", world=1, workers=0)
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["mask"].shape == (8, 64, 64)
    assert dm.class_names[0] == "background" and len(dm.class_names) == 11
    dm.rank, dm.world_size = 1, 2  # strided split, no duplicates across ranks
    assert len(dm.test_dataloader().sampler) == 12


def test_unknown_source_is_a_clear_error() -> None:
    with pytest.raises(
        ValueError, match=r"data\.source: unknown source 'ftp'; expected one of toy, shards, hf"
    ):
        CaptionDataModule(source="ftp")
