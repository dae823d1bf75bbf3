"""A Hugging Face `datasets` stream as a training source (`pixparse/cc3m-wds`, or the `webdataset` builder
with local `data_files`), with exact resume through `datasets`' own iterable state.

Per pass, the stream's shard order is shuffled with (seed, pass) (`shuffle(buffer_size=1,
max_buffer_input_shards=1)`: a buffer of one holds nothing, so nothing is lost at a resume), then split by
slot (rank x worker) with `split_dataset_by_node(strategy="shards")` when there are at least as many shards
as slots, else `strategy="examples"` (every slot reads everything and keeps 1 example in n_slots). We split
by slot ourselves and iterate with `.iter(batch_size=1)`, so `datasets` does not split again by DataLoader
worker (which leaves workers without shards when a rank has fewer shards than workers). The position is
`IterableDataset.state_dict()` (shard index and example index in it, plain ints); `datasets`' own shuffle
buffer is not restored by that state, so the shuffle is our block shuffle (`block_shuffle`). A resume
re-reads the current shard up to the position (the webdataset builder reads tar members, no image
decoding) plus one block. Equal batch counts per rank come from the endless passes (`CaptionStream`)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from synseg.data.train.block_shuffle import BlockShuffledLane
from synseg.data.train.lane_mix import MixedLane
from synseg.data.train.records import SkipCounter
from synseg.data.train.seeding import stable_seed
from synseg.data.train.sources import check_urls, expand_urls
from synseg.errors import ConfigError

log = logging.getLogger(__name__)
HF_KEYS = ("path", "name", "split", "data_files", "shuffle_buffer")


class _NoBufferWarning(logging.Filter):
    """Drops datasets' warning that a shuffle buffer's content is not restored: ours holds nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "state dict of a shuffle buffer" not in record.getMessage()


def _keep_raw_fields() -> None:
    # datasets' webdataset builder decodes .txt as UTF-8 and .json inside its generator, so one bad caption
    # would end the whole stream. Keep those fields as bytes; `records.decode_record` decodes and counts.
    from datasets.packaged_modules.webdataset import webdataset as wds

    wds.WebDataset.DECODERS = {**wds.WebDataset.DECODERS, "txt": bytes, "json": bytes}
    logger = logging.getLogger("datasets.iterable_dataset")
    if not any(isinstance(f, _NoBufferWarning) for f in logger.filters):
        logger.addFilter(_NoBufferWarning())


class HFSource:
    """A `datasets` stream split by slot; images are not decoded by `datasets` (broken ones are counted)."""

    kind = "hf"

    def __init__(
        self,
        path: str,
        name: str | None = None,
        split: str = "train",
        data_files: str | list[str] | None = None,
        seed: int = 0,
        shuffle_buffer: int = 0,
    ) -> None:
        if isinstance(shuffle_buffer, bool) or not isinstance(shuffle_buffer, int) or shuffle_buffer < 0:
            raise ConfigError(f"data.hf.shuffle_buffer: expected an integer >= 0, got {shuffle_buffer!r}")
        self.path, self.name_, self.split, self.seed = path, name, split, int(seed)
        self.data_files = None
        if data_files:
            files = expand_urls(data_files)
            check_urls(files, "data.hf.data_files", data_files)
            self.data_files = {split: files}
        self.block = max(1, shuffle_buffer)
        self.name = f"hf {path}" + (f" ({data_files})" if data_files else "")
        self._base = self._open()  # fail early, in the main process, with a clear message

    @classmethod
    def from_config(cls, cfg: dict, seed: int = 0) -> HFSource:
        unknown = sorted(set(cfg) - set(HF_KEYS))
        if unknown:
            raise ConfigError(f"data.hf.{unknown[0]}: unknown key; expected {', '.join(HF_KEYS)}")
        if not cfg.get("path"):
            raise ConfigError("data.hf.path: missing; expected a dataset name such as pixparse/cc3m-wds")
        return cls(
            cfg["path"],
            cfg.get("name"),
            cfg.get("split", "train"),
            cfg.get("data_files"),
            seed=seed,
            shuffle_buffer=cfg.get("shuffle_buffer", 1000),
        )

    def _open(self) -> Any:
        import datasets

        _keep_raw_fields()
        try:
            ds = datasets.load_dataset(
                self.path, self.name_, split=self.split, data_files=self.data_files, streaming=True
            )
        except Exception as err:
            raise ConfigError(
                f"data.hf.path: cannot open Hugging Face dataset {self.path!r} (split {self.split!r}): "
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. Check the name, "
                "the network (HF_HUB_OFFLINE) and HF_TOKEN, or use data=shards with local tar files."
            ) from err
        return ds.decode(False)

    @property
    def num_shards(self) -> int:
        return int(self._base.num_shards)

    def fingerprint(self) -> str:
        spec = [self.path, self.name_, self.split, self.data_files, self.seed, self.block]
        return hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:16]

    def plan(self, world: int, n_lanes: int) -> list[str]:
        n_slots = world * n_lanes
        how = (
            "split by shard (split_dataset_by_node strategy=shards)"
            if self.num_shards >= n_slots
            else f"fewer shards than slots, so every slot reads every shard and keeps 1 example in {n_slots}"
        )
        return [
            f"data: {self.name} ({self.num_shards} shards) on {world} rank(s) x {n_lanes} worker(s) = "
            f"{n_slots} slot(s): {how}, shard order reshuffled every pass"
        ]

    def _open_pass(
        self, slot: int, n_slots: int, pass_idx: int, pos: dict | None, skips: SkipCounter
    ) -> Iterator[tuple[dict[str, Any], dict]]:
        from datasets.distributed import split_dataset_by_node

        _keep_raw_fields()  # again: a spawned DataLoader worker re-imports datasets
        seed = stable_seed(self.seed, "hf", pass_idx) % 2**32
        ds = self._base.shuffle(seed=seed, buffer_size=1, max_buffer_input_shards=1)
        strategy = "shards" if self.num_shards >= n_slots else "examples"
        ds = split_dataset_by_node(ds, rank=slot, world_size=n_slots, strategy=strategy)
        if pos is not None:
            ds.load_state_dict(pos)
        try:
            for batch in ds.iter(batch_size=1):
                yield {k: v[0] for k, v in batch.items()}, ds.state_dict()
        except Exception as err:  # a broken file mid-stream ends this pass, counted
            skips.skip("shard_broken", f"{self.path} slot {slot}", f"({type(err).__name__}: {err})")

    def lane(
        self, rank: int, world: int, lane: int, n_lanes: int, state: dict | None, skips: SkipCounter
    ) -> MixedLane:
        """The endless record stream of slot (rank, lane), restored from `state` when given."""
        slot, n_slots = rank * n_lanes + lane, world * n_lanes
        inner = BlockShuffledLane(
            lambda p, pos, sk: self._open_pass(slot, n_slots, p, pos, sk),
            self.block,
            (self.seed, "hf-block", rank, lane, world, n_lanes),
            skips,
            f"data stream {self.name} (rank {rank} worker-lane {lane} of {world}x{n_lanes})",
            MixedLane.source_states(state, 1)[0],
        )
        return MixedLane([inner], [1.0], (self.seed, "hf-mix", rank, lane), state)

    def inventory(self, skips: SkipCounter) -> Iterator[tuple[str, str]]:
        """(url, key) of every example (reads the whole stream once, no image decoding)."""
        for batch in self._base.iter(batch_size=1):
            yield str(batch.get("__url__", [""])[0]), str(batch.get("__key__", [""])[0])
