"""Weighted mixing of several sources' lanes into one record stream (`data.shards.sources` with weights).

Draw d of a lane picks source i with probability weight_i / sum(weights) from a counter-based uniform
number `stable_uniform(seed parts, d)`: the mixing state is the draw count alone, so it resumes exactly."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from typing import Any, Protocol

from synseg.data.train.seeding import stable_uniform


class Lane(Protocol):
    def __iter__(self) -> Iterator[dict[str, Any]]: ...
    def state(self) -> Any: ...
    def used(self) -> None: ...


class MixedLane:
    """Records drawn from `lanes` by weight; `state()` = {"draws": d, "sources": [lane states]}."""

    def __init__(
        self,
        lanes: list[Lane],
        weights: list[float],
        seed_parts: tuple[int | str, ...],
        state: dict[str, Any] | None = None,
    ) -> None:
        total = float(sum(weights))
        self.lanes, self.seed_parts = lanes, seed_parts
        self.cumulative = list(itertools.accumulate(w / total for w in weights))
        self.draws = int(state["draws"]) if state else 0
        self._last = 0

    @staticmethod
    def source_states(state: dict[str, Any] | None, n: int) -> list[Any]:
        """The per-source lane states inside a MixedLane state (None: fresh)."""
        if not state:
            return [None] * n
        return list(state["sources"])

    def _pick(self) -> int:
        if len(self.lanes) == 1:
            return 0
        u = stable_uniform(*self.seed_parts, "draw", self.draws)
        return min(bisect.bisect_right(self.cumulative, u), len(self.lanes) - 1)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        iters = [iter(lane) for lane in self.lanes]
        while True:
            i = self._pick()
            record = next(iters[i])  # lanes are endless (or raise DataStreamError)
            self.draws += 1
            self._last = i
            yield record

    def state(self) -> dict[str, Any]:
        return {"draws": self.draws, "sources": [lane.state() for lane in self.lanes]}

    def used(self) -> None:
        self.lanes[self._last].used()
