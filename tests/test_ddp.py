"""DDP correctness on CPU (2 processes, gloo): the SynSeg training-step gradient averaged over ranks equals
the single-process gradient on the same global batch, and the evaluator's mIoU over rank shards equals the
single-process mIoU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.test_synseg_module import make_module

pytestmark = pytest.mark.slow


def _half(batch: dict, rank: int, world: int) -> dict:
    b = batch["images"].shape[0]
    sl = slice(rank * b // world, (rank + 1) * b // world)
    return {k: (v[sl] if torch.is_tensor(v) or isinstance(v, list) else v) for k, v in batch.items()}


def _grads(batch: dict) -> dict[str, torch.Tensor]:
    module = make_module()
    module.training_step(batch, 0).backward()
    return {n: p.grad.detach().clone() for n, p in module.head.named_parameters() if p.grad is not None}


def _eval(scores: torch.Tensor, masks: torch.Tensor, rank: int = 0, world: int = 1) -> float:
    from synseg.evaluation.evaluator import SegmentationEvaluator

    ev = SegmentationEvaluator(["background", "a", "b", "c"], True, threshold=0.5)
    for i in range(rank, scores.shape[0], world):  # the datamodule's strided split
        ev.update(scores[i : i + 1], masks[i : i + 1])
    return float(ev.compute()["mIoU"])


def _worker(rank: int, world: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["SYNSEG_TEST_PORT"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    data = torch.load(Path(tmp) / "inputs.pt", weights_only=False)
    grads = _grads(_half(data["batch"], rank, world))
    for g in grads.values():  # what DDP does: all-reduce, then divide by the world size
        dist.all_reduce(g)
        g /= world
    miou = _eval(data["scores"], data["masks"], rank, world)
    if rank == 0:
        torch.save({"grads": grads, "miou": miou}, Path(tmp) / "ddp.pt")
    dist.destroy_process_group()


def test_two_process_gradients_and_miou_equal_single_process(toy_folders: Path, tmp_path: Path) -> None:
    from tests.test_datamodule import collect, make_dm

    batch = collect(make_dm(toy_folders, "toy", world=1, workers=0, steps=1, batch=8))[0]
    batch["category_valid"][0] = False  # one image without category: uneven qualifying counts per rank
    batch["categories"][0] = [""] * 4
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(7, 3, 16, 16, generator=gen)
    masks = torch.randint(0, 4, (7, 16, 16), generator=gen)
    masks[:, :2] = 255
    torch.save({"batch": batch, "scores": scores, "masks": masks}, tmp_path / "inputs.pt")

    os.environ["SYNSEG_TEST_PORT"] = str(29500 + os.getpid() % 1000)
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=False)

    single = _grads(batch)
    assert single.keys() == ddp["grads"].keys() and single
    for name, g in single.items():
        assert torch.allclose(ddp["grads"][name], g, atol=1e-6, rtol=1e-4), name
    assert ddp["miou"] == pytest.approx(_eval(scores, masks), abs=1e-12)
