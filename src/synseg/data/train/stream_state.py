"""Stream positions in the checkpoint: what the datamodule saves so a resumed run continues the training
data exactly where it stopped, and the checks that refuse a checkpoint the stream cannot continue.

Each training batch carries its lane's position after it (`CaptionStream`); the datamodule records the
position of every *consumed* batch (`on_before_batch_transfer`: prefetched batches do not count). The
checkpoint's `datamodule` entry (plain containers only, for `torch.load(weights_only=True)`):

    {"version": 2, "global_step": s, "next_batch": s, "source": "shards", "fingerprint": "…",
     "world_size": W, "num_lanes": N, "ranks": [[lane 0 state, …, lane N-1 state] per rank]}

Under DDP every rank's lanes are gathered into every rank's dict (`all_gather_object`) because only rank
0's is saved. A lane state is None for a lane that has not yielded yet (and always for the toy source,
whose order is a pure function of the global sample index)."""

from __future__ import annotations

import copy
from typing import Any

from synseg.errors import CheckpointError

STATE_VERSION = 2
POSITIONED = ("shards", "hf")  # sources whose lanes have a position (toy / dense: a pure function of k)


def gather_from_ranks(local: Any) -> list[Any] | None:
    """`local` of every rank, indexed by rank, under torch.distributed; None when it is not initialised."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, local)
    return out


class StreamPositions:
    """This rank's lane positions after its consumed batches, and the loaded state they resume from."""

    def __init__(self) -> None:
        self.next_batch = 0  # global index of the next batch to consume
        self.tracked = False  # batches carry positions (not the dense stream: then the step is Lightning's)
        self.lanes: list[Any] | None = None  # this rank's lane states, index = lane
        self.loaded: dict[str, Any] | None = None

    def load(self, state: dict[str, Any]) -> int:
        """Keeps a checkpoint's state (checked later, in `resume`); returns the step to resume at."""
        self.loaded = copy.deepcopy(dict(state))
        step = int(state.get("next_batch", state.get("global_step", 0)))
        self.next_batch = step
        return step

    def resume(self, kind: str, fingerprint: str | None, rank: int, world: int, n_lanes: int) -> list[Any]:
        """This rank's lane states to start from ([None] * n_lanes: fresh); CheckpointError, in one line,
        when the loaded state belongs to another stream layout or data configuration."""
        saved, fresh = self.loaded, [None] * n_lanes
        self.lanes = list(fresh)
        if not saved or int(saved.get("next_batch", saved.get("global_step", 0))) == 0:
            return self.lanes
        if "version" not in saved:  # written before positions were saved
            if kind in POSITIONED:
                raise CheckpointError(
                    f"data: the checkpoint has no stream position (written by an older version), so the "
                    f"{kind} stream cannot continue where it stopped; start a new run instead of resuming"
                )
            return self.lanes
        where = "data: cannot resume the training stream"
        if saved["source"] != kind:
            raise CheckpointError(
                f"{where}: the checkpoint read data.source={saved['source']}, this run {kind}"
            )
        if saved.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"{where}: the data configuration changed since the checkpoint (shard list, weights, seed, "
                "shuffle_buffer or resampled); positions would point at other samples"
            )
        layout_changed = saved["world_size"] != world or (
            kind in POSITIONED and saved["num_lanes"] != n_lanes
        )
        if layout_changed:
            raise CheckpointError(
                f"{where}: the checkpoint was written with {saved['world_size']} rank(s) x "
                f"{saved['num_lanes']} worker(s), this run has {world} x {n_lanes}; resume with the same "
                "number of devices (trainer.devices x num_nodes) and data.num_workers"
            )
        if kind in POSITIONED:
            ranks = saved.get("ranks") or []
            if rank >= len(ranks) or ranks[rank] is None:
                raise CheckpointError(f"{where}: the checkpoint holds no stream position for rank {rank}")
            self.lanes = copy.deepcopy(list(ranks[rank]))
        return self.lanes

    def consumed(self, stream: dict[str, Any]) -> None:
        """Records the lane position after a consumed batch (`batch["stream"]`)."""
        if self.lanes is None:
            self.lanes = []
        lane = int(stream["lane"])
        self.lanes.extend([None] * (lane + 1 - len(self.lanes)))
        self.lanes[lane] = stream["state"]
        self.next_batch = max(self.next_batch, int(stream["batch"]) + 1)
        self.tracked = True

    def state_dict(
        self, kind: str, fingerprint: str | None, rank: int, world: int, n_lanes: int, global_step: int
    ) -> dict[str, Any]:
        """The checkpoint entry; gathers every rank's lanes under torch.distributed (a collective: every
        rank calls it, as Lightning's `dump_checkpoint` does)."""
        lanes = self.lanes
        if lanes is None and self.loaded and self.loaded.get("ranks"):
            ranks = self.loaded["ranks"]
            lanes = ranks[rank] if rank < len(ranks) else None
        local = copy.deepcopy(lanes) if lanes is not None else [None] * n_lanes
        gathered = gather_from_ranks(local)
        if gathered is None:  # one process (or tests simulating ranks): only this rank's entry is known
            gathered = [None] * world
            gathered[rank] = local
        return {
            "version": STATE_VERSION,
            "global_step": int(global_step),
            "next_batch": int(self.next_batch if self.tracked else global_step),
            "source": kind,
            "fingerprint": fingerprint,
            "world_size": int(world),
            "num_lanes": int(n_lanes),
            "ranks": gathered,
        }
