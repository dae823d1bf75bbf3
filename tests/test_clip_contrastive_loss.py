"""`clip_contrastive_loss` equals open_clip's `ClipLoss` (local loss, gather with grad): one process, and two
gloo ranks with gradients, which checks the gather and the rank-offset labels."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from synseg.losses import clip_contrastive_loss


def features(seed: int, b: int = 6, d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g), dim=-1), F.normalize(
        torch.randn(b, d, generator=g), dim=-1
    )


@pytest.mark.parametrize("scale", [1.0, 14.3, 100.0])
def test_single_process_equals_open_clip(scale: float) -> None:
    img, txt = features(0)
    ours = clip_contrastive_loss(img, txt, torch.tensor(scale))
    ref = ClipLoss()(img, txt, torch.tensor(scale))
    torch.testing.assert_close(ours, ref)
    # and by hand: mean of the row-wise and column-wise cross-entropy on the diagonal
    logits = scale * img @ txt.T
    hand = (F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.T, torch.arange(6))) / 2
    torch.testing.assert_close(ours, hand)


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        img, txt = features(10 + rank)
        results = {}
        for name, fn in {
            "ours": lambda i, t, s: clip_contrastive_loss(i, t, s),
            "ref": ClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=world),
        }.items():
            i, t = img.clone().requires_grad_(), txt.clone().requires_grad_()
            loss = fn(i, t, torch.tensor(10.0))
            loss.backward()
            results[name] = (loss.detach(), i.grad.clone(), t.grad.clone())
        out[rank] = results
    finally:
        dist.destroy_process_group()


def test_two_ranks_equal_open_clip_with_gradients() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.Manager()
    out = manager.dict()
    mp.start_processes(_worker, args=(2, port, out), nprocs=2, join=True, start_method="spawn")
    for rank in range(2):
        ours, ref = out[rank]["ours"], out[rank]["ref"]
        for a, b in zip(ours, ref, strict=True):
            torch.testing.assert_close(a, b)
    # the global batch matters: rank 0's loss differs from a loss on its local batch alone
    img, txt = features(10)
    assert not torch.allclose(out[0]["ours"][0], clip_contrastive_loss(img, txt, torch.tensor(10.0)))
