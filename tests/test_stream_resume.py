"""Resume continues the training data at its position: after a resume at step k, every rank and worker
yields exactly the batches an uninterrupted run yields after step k (toy, shards, shards with corrupt
samples and a truncated shard, hf), the state is plain containers gathered from every rank, and a
checkpoint from another layout or data configuration is refused in one line."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest
import torch

from synseg.data.train.records import SkipCounter
from synseg.data.train.sources import ShardSource
from synseg.errors import CheckpointError
from tests.test_data_sources import _jpeg, good_shard, write_tar
from tests.test_datamodule import make_dm

STEPS, RESUME_AT, BATCH = 10, 3, 3  # resume at an odd step: worker w then serves lane (3 + w) % 2


@pytest.fixture(scope="module")
def corrupt_set(toy_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 8 toy shards, one of them truncated mid-sample, plus a shard of corrupt and good samples."""
    root = tmp_path_factory.mktemp("corrupt_set")
    for p in sorted(toy_shards.glob("*.tar")):
        shutil.copy(p, root / p.name)
    data = (root / "train-000003.tar").read_bytes()
    (root / "train-000003.tar").write_bytes(data[: len(data) // 3])
    members = []
    for i in range(6):
        members += [(f"c{i}.jpg", b"garbage" if i % 2 else _jpeg(40 * i)), (f"c{i}.txt", b"a blue box")]
    write_tar(root / "train-000008.tar", members)
    return root


def source_cfg(kind: str, toy_shards: Path, corrupt_set: Path) -> dict:
    if kind == "toy":
        return {}
    if kind == "hf":
        return {"hf": {"path": "webdataset", "data_files": str(toy_shards / "*.tar"), "shuffle_buffer": 4}}
    root = corrupt_set if kind == "shards_corrupt" else toy_shards
    return {"shards": {"urls": str(root / "*.tar"), "shuffle_buffer": 4}}


def run(dm, snapshot_at: int | None = None) -> tuple[list[dict], dict | None]:
    """Iterates the train loader as Lightning does (each consumed batch passes on_before_batch_transfer);
    the datamodule state right after `snapshot_at` batches."""
    batches, snap = [], None
    for i, batch in enumerate(dm.train_dataloader()):
        batches.append(dm.on_before_batch_transfer(batch, 0))
        if i + 1 == snapshot_at:
            snap = dm.state_dict()
    return batches, snap


def merged(states: list[dict]) -> dict:
    """What all_gather_object gives under DDP: every rank's lanes in one state."""
    out = dict(states[0])
    out["ranks"] = [s["ranks"][r] for r, s in enumerate(states)]
    return out


@pytest.mark.parametrize("kind", ["toy", "shards", "shards_corrupt", "hf"])
def test_resume_at_step_k_yields_what_an_uninterrupted_run_yields_after_k(
    kind: str, toy_shards: Path, corrupt_set: Path, toy_folders: Path
) -> None:
    source = "toy" if kind == "toy" else kind.split("_")[0]
    cfg = source_cfg(kind, toy_shards, corrupt_set)
    full, snaps = {}, []
    for rank in (0, 1):  # 2 ranks x 2 workers
        dm = make_dm(toy_folders, source, rank=rank, world=2, workers=2, steps=STEPS, batch=BATCH, **cfg)
        full[rank], snap = run(dm, snapshot_at=RESUME_AT)
        snaps.append(snap)
        assert len(full[rank]) == STEPS
    state = merged(snaps)
    loaded = torch.load(io.BytesIO(_saved(state)), weights_only=True)  # plain containers only
    assert loaded == state and state["next_batch"] == RESUME_AT and state["world_size"] == 2
    for rank in (0, 1):
        dm = make_dm(toy_folders, source, rank=rank, world=2, workers=2, steps=STEPS, batch=BATCH, **cfg)
        dm.load_state_dict(loaded)
        loader = dm.train_dataloader()
        assert len(loader) == STEPS  # the whole epoch: Lightning resumes at batch RESUME_AT
        tail, _ = run(dm)
        assert [b["keys"] for b in tail] == [b["keys"] for b in full[rank][RESUME_AT:]], (kind, rank)
        skipped_tail = sum((Counter(b["skipped"]) for b in tail), Counter())
        assert skipped_tail == sum((Counter(b["skipped"]) for b in full[rank][RESUME_AT:]), Counter())
        if kind == "shards_corrupt" and rank == 0:  # the corrupt shard set really has faults
            total = sum((Counter(b["skipped"]) for r in (0, 1) for b in full[r]), Counter())
            assert total["image_undecodable"] >= 1 and total["shard_broken"] >= 1
        if kind == "toy":
            assert torch.equal(tail[0]["images"], full[rank][RESUME_AT]["images"])


def _saved(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def test_checkpoints_from_another_layout_or_data_are_refused(toy_shards: Path, toy_folders: Path) -> None:
    cfg = source_cfg("shards", toy_shards, toy_shards)
    dm = make_dm(toy_folders, "shards", rank=0, world=1, workers=2, steps=6, batch=2, **cfg)
    _, state = run(dm, snapshot_at=2)

    def resume(world: int = 1, workers: int = 2, **kw) -> None:
        other = make_dm(toy_folders, "shards", rank=0, world=world, workers=workers, steps=6, batch=2, **kw)
        other.load_state_dict(state)
        other.train_dataloader()

    resume(**cfg)  # the same layout and data: fine
    with pytest.raises(
        CheckpointError, match=r"written with 1 rank\(s\) x 2 worker\(s\), this run has 2 x 2"
    ):
        resume(world=2, **cfg)
    with pytest.raises(CheckpointError, match=r"this run has 1 x 3; resume with the same number of devices"):
        resume(workers=3, **cfg)
    with pytest.raises(CheckpointError, match="the data configuration changed since the checkpoint"):
        resume(shards={"urls": str(toy_shards / "train-00000[0-6].tar"), "shuffle_buffer": 4})
    with pytest.raises(CheckpointError, match="the checkpoint has no stream position"):
        legacy = make_dm(toy_folders, "shards", rank=0, world=1, workers=2, steps=6, batch=2, **cfg)
        legacy.load_state_dict({"global_step": 2, "skipped": {}})
        legacy.train_dataloader()
    toy = make_dm(toy_folders, "toy", rank=0, world=1, workers=2, steps=6, batch=2)
    toy.load_state_dict({"global_step": 2})  # a toy checkpoint of the previous format still resumes
    assert next(iter(toy.train_dataloader()))["keys"][0] == "train-000000004"


def test_resume_reads_no_member_data_before_its_position(tmp_path: Path, monkeypatch) -> None:
    good_shard(tmp_path / "big.tar", [f"k{i:02d}" for i in range(50)])
    src = ShardSource.from_config({"urls": str(tmp_path / "big.tar"), "shuffle_buffer": 0})
    lane = src.lane(0, 1, 0, 1, None, SkipCounter())
    for _ in islice(iter(lane), 40):
        lane.used()
    state = lane.state()
    reads = Counter()
    real = tarfile.TarFile.extractfile
    monkeypatch.setattr(
        tarfile.TarFile, "extractfile", lambda self, m: reads.update([m.name]) or real(self, m)
    )
    resumed = src.lane(0, 1, 0, 1, state, SkipCounter())
    keys = [r["__key__"] for r in islice(iter(resumed), 5)]
    assert keys == [f"k{i}" for i in range(40, 45)]
    assert sorted(reads) == sorted(f"k{i}.{ext}" for i in range(40, 45) for ext in ("jpg", "txt"))


def _gather_worker(rank: int, world: int, port: str, out: str) -> None:
    import torch.distributed as dist

    from synseg.data.train.stream_state import StreamPositions

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    pos = StreamPositions()
    pos.consumed({"rank": rank, "lane": 1, "batch": 4, "state": {"draws": 10 + rank, "sources": []}})
    state = pos.state_dict("shards", "fp", rank, world, 2, global_step=5)
    torch.save(state, Path(out) / f"state{rank}.pt")
    dist.destroy_process_group()


def test_state_dict_gathers_every_rank_under_torch_distributed(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    port = str(29700 + os.getpid() % 500)
    mp.start_processes(
        _gather_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    for rank in (0, 1):  # every rank holds every rank's lanes (only rank 0's dict is saved by Lightning)
        state = torch.load(tmp_path / f"state{rank}.pt", weights_only=True)
        assert state["ranks"] == [[None, {"draws": 10, "sources": []}], [None, {"draws": 11, "sources": []}]]
        assert state["next_batch"] == 5 and state["global_step"] == 5
