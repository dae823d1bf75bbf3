"""What makes a training step the same computation on 1 process x B images and on W DDP processes x B/W:
the rank's place in the global batch, objects gathered from every rank, and means over the global batch.

DDP averages gradients over ranks, so a loss written as (sum over this rank's items) / (global count / W)
has, after averaging, exactly the gradient of the mean over all ranks' items, however unevenly the items
fall on the ranks. Outside DDP every helper is the identity (count / 1, [obj], rank 0 of 1)."""

from __future__ import annotations

from typing import Any

import torch


def is_distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) outside DDP."""
    if not is_distributed():
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order; [obj] outside DDP. A collective: all ranks call it."""
    if not is_distributed():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_count_per_rank(count: torch.Tensor) -> torch.Tensor:
    """The global count of items divided by the world size (see the module docstring); `count` outside DDP."""
    if not is_distributed():
        return count
    import torch.distributed as dist

    total = count.detach().clone().float()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def global_mean(total: torch.Tensor, count: torch.Tensor | float) -> torch.Tensor:
    """`total` (a sum over this rank's items) as its share of the mean over all ranks' items; 0 with a
    graph when there is no item anywhere."""
    n = torch.as_tensor(count, dtype=torch.float32, device=total.device)
    return total / mean_count_per_rank(n).clamp(min=1e-6)


def batch_mean(loss_fn: Any, *args: Any, count: int, **kwargs: Any) -> torch.Tensor:
    """`loss_fn(*args, reduction="mean")` outside DDP (the single-process numerics, unchanged); under DDP
    its sum over this rank's `count` items as a share of the mean over all ranks' items."""
    if not is_distributed():
        return loss_fn(*args, **kwargs)
    return global_mean(loss_fn(*args, reduction="sum", **kwargs), count)
