"""One lane of records (a rank x worker share of one data source), pass after pass, block-shuffled, with
a position that a resumed run restores exactly.

Why not webdataset's rolling `shuffle` buffer or `datasets`' shuffle buffer: their content is not part of
any checkpointable state, so a resume would lose or repeat the buffered samples. A block shuffle reads
`block` records, shuffles them with an RNG seeded by (seed parts, pass, block index) and yields them; the
position after any record is (pass, where the block starts in the source, block index, records taken from
the block), plain ints (plus the source's own position format). Resuming re-reads only the current block
(the source seeks to the block start itself: see `ShardSource` and `HFSource` for what that costs)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from synseg.data.train.records import SkipCounter
from synseg.data.train.seeding import stable_rng
from synseg.errors import DataStreamError

# open_pass(pass_idx, position or None, skips) -> iterator of (record, source position after that record)
PassOpener = Callable[[int, Any, SkipCounter], Iterator[tuple[dict[str, Any], Any]]]


def initial_state() -> dict[str, Any]:
    return {"pass": 0, "pos": None, "block": 0, "taken": 0}


class BlockShuffledLane:
    """Endless records of one lane; `state()` is the position after the last record yielded.

    A pass that yields no record, or no usable sample (`used()` never called), raises DataStreamError:
    nothing can fill this lane's batches. Skip events while re-reading an already counted block after a
    resume are muted, so counts restored from a checkpoint are not counted twice."""

    def __init__(
        self,
        open_pass: PassOpener,
        block: int,
        seed_parts: tuple[int | str, ...],
        skips: SkipCounter,
        name: str,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.open_pass, self.block, self.seed_parts = open_pass, max(1, int(block)), seed_parts
        self.skips, self.name = skips, name
        self._state = copy.deepcopy(state) if state else initial_state()
        self._used_in_pass = 0

    def state(self) -> dict[str, Any]:
        return copy.deepcopy(self._state)

    def used(self) -> None:
        """The last record yielded decoded into a usable sample."""
        self._used_in_pass += 1

    def _order(self, pass_idx: int, block_idx: int, n: int) -> list[int]:
        order = list(range(n))
        if self.block > 1:
            stable_rng(*self.seed_parts, pass_idx, block_idx).shuffle(order)
        return order

    def __iter__(self) -> Iterator[dict[str, Any]]:
        st = self._state
        resumed = st["pos"] is not None or st["taken"] > 0  # mid-pass: its earlier records are unknown
        while True:
            p, pos, b, skip_n = st["pass"], st["pos"], st["block"], st["taken"]
            records = self.open_pass(p, pos, self.skips)
            n_records, self._used_in_pass = 0, 0
            while True:
                self.skips.muted = skip_n > 0  # this block was read (and its events counted) before
                try:
                    block = list(islice(records, self.block))
                finally:
                    self.skips.muted = False
                if not block:
                    break
                full, next_pos = len(block) == self.block, block[-1][1]
                order = self._order(p, b, len(block))
                for i in range(skip_n, len(block)):
                    if i + 1 < len(block):
                        self._state = {"pass": p, "pos": pos, "block": b, "taken": i + 1}
                    elif full:
                        self._state = {"pass": p, "pos": next_pos, "block": b + 1, "taken": 0}
                    else:
                        self._state = {"pass": p + 1, "pos": None, "block": 0, "taken": 0}
                    n_records += 1
                    yield block[order[i]][0]
                skip_n = 0
                if not full:
                    break
                pos, b = next_pos, b + 1
            if not resumed and n_records == 0:
                raise DataStreamError(
                    f"{self.name}: no record in a whole pass (pass {p}; skipped: {self.skips.summary()}): "
                    "too few shards or samples for this many ranks x workers, or every shard is broken"
                )
            if not resumed and self._used_in_pass == 0:
                raise DataStreamError(
                    f"{self.name}: no usable sample in a whole pass of {n_records} records "
                    f"(pass {p}; skipped: {self.skips.summary()})"
                )
            resumed = False
            st = self._state = {"pass": p + 1, "pos": None, "block": 0, "taken": 0}
