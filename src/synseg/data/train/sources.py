"""Where image-caption records come from: the toy world (on the fly), webdataset tar shards (local, `pipe:`
or `https://`, one set or a weighted mix of sets), or a Hugging Face `datasets` stream (`hf_source`).

A shard or hf source gives each *lane* (rank x worker slot of the training stream) an endless,
position-tracked record iterator (`lane()`), whose order is a pure function of (seed, rank, lane, world
size, lanes, pass); its `state()` restores it exactly (see `block_shuffle`).

Shards, one pass: the shard list is shuffled with (seed, source, pass), the same on every slot; with at
least as many shards as slots, slot s reads shards s, s + n_slots, ... (uneven counts are fine: each slot
goes on to its next pass independently, so every rank still yields exactly `total_steps` batches); with
fewer shards than slots, every slot reads every shard and keeps the records j with j % n_slots == s (a
sample-level split). `resampled: true` instead lets each slot draw shards with replacement from
(seed, source, slot, draw), webdataset-`ResampledShards` style but with a counter-based draw that resumes
(webdataset's draws come from a `random.Random` whose state is not checkpointed). The position inside a
pass is [shard index in the slot's list, record index in that shard, records read in the pass]: a resume
reopens that shard and skips to the record without reading member data, i.e. it re-reads at most one shard
up to the position (headers and bytes, no decoding) plus one shuffle block of records."""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from synseg.data.train.block_shuffle import BlockShuffledLane
from synseg.data.train.lane_mix import MixedLane
from synseg.data.train.records import SkipCounter
from synseg.data.train.seeding import stable_rng, stable_uniform
from synseg.data.train.shard_reader import iter_shard
from synseg.errors import ConfigError

log = logging.getLogger(__name__)
SOURCES = ("toy", "shards", "hf", "dense")  # dense: toy images with masks, only for decoder pretraining
SHARD_KEYS = ("urls", "sources", "resampled", "shuffle_buffer")


def _is_local(url: str) -> bool:
    return urlparse(url).scheme in ("", "file")


def expand_urls(urls: str | list[str]) -> list[str]:
    """Shard URLs from patterns: webdataset's expansion (`{000000..000009}` brace ranges, `::`-separated
    lists), then globs (`*`, `?`, `[..]`) for local paths, sorted. Remote and `pipe:` URLs are not globbed."""
    from webdataset.shardlists import expand_urls as wds_expand

    patterns = [urls] if isinstance(urls, str) else [str(u) for u in urls]
    out: list[str] = []
    for pattern in patterns:
        try:
            expanded = wds_expand(str(pattern))
        except AssertionError as err:  # webdataset's ${WDS_*} substitution of a missing variable
            raise ConfigError(f"data.shards.urls: cannot expand {pattern!r}: {err}") from None
        for url in expanded:
            if _is_local(url) and any(c in url for c in "*?["):
                out.extend(sorted(glob.glob(url.removeprefix("file://").removeprefix("file:"))))
            else:
                out.append(url)
    return out


def check_urls(urls: list[str], where: str, pattern: Any) -> None:
    """ConfigError when a pattern matched nothing, a local shard is missing or a scheme is unknown."""
    from webdataset.gopen import gopen_schemes

    if not urls:
        raise ConfigError(
            f"{where}: the shard pattern {pattern!r} matched no files; expected tar shards such as "
            "data/cc3m/cc3m-{000000..000331}.tar, data/shards/*.tar, pipe:CMD or https://host/x-{0..9}.tar"
        )
    bad = [u for u in urls if not _is_local(u) and urlparse(u).scheme not in gopen_schemes]
    if bad:
        raise ConfigError(
            f"{where}: unsupported URL scheme in {bad[0]!r}; expected a local path, file:, pipe:, "
            f"http(s): or one of {', '.join(sorted(s for s in gopen_schemes if s != '__default__'))}"
        )
    missing = [u for u in urls if _is_local(u) and not os.path.exists(u.removeprefix("file:"))]
    if missing:
        raise ConfigError(f"{where}: {len(missing)} shard(s) do not exist, e.g. {missing[0]!r}")


@dataclass
class ShardSet:
    """One set of shards of a mix: its configured pattern, expanded URLs and relative weight."""

    pattern: Any
    urls: list[str]
    weight: float = 1.0


def _parse_sets(cfg: dict) -> list[ShardSet]:
    has_urls, has_sources = bool(cfg.get("urls")), bool(cfg.get("sources"))
    if has_urls == has_sources:
        raise ConfigError(
            "data.shards: give exactly one of urls (a pattern such as data/shards/*.tar) or sources "
            "(a list of {urls: ..., weight: ...})"
        )
    if has_urls:
        urls = expand_urls(cfg["urls"])
        check_urls(urls, "data.shards.urls", cfg["urls"])
        return [ShardSet(cfg["urls"], urls)]
    sets = []
    for i, item in enumerate(cfg["sources"]):
        where = f"data.shards.sources[{i}]"
        if not isinstance(item, Mapping) or not item.get("urls"):
            raise ConfigError(f"{where}: expected a mapping with urls (and weight), got {item!r}")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ConfigError(f"{where}.weight: expected a number > 0, got {weight!r}")
        urls = expand_urls(item["urls"])
        check_urls(urls, f"{where}.urls", item["urls"])
        sets.append(ShardSet(item["urls"], urls, float(weight)))
    return sets


class ShardSource:
    """Webdataset tar shards, one set or a weighted mix of sets (see the module docstring)."""

    kind = "shards"

    def __init__(self, sets: list[ShardSet], seed: int = 0, shuffle_buffer: int = 0, resampled: bool = False):
        self.sets, self.seed = sets, int(seed)
        self.block, self.resampled = max(1, int(shuffle_buffer)), bool(resampled)
        self.name = "shards " + " + ".join(str(s.pattern) for s in sets)

    @classmethod
    def from_config(cls, cfg: dict, seed: int = 0) -> ShardSource:
        """From the `data.shards` dict; ConfigError names a bad key or value."""
        unknown = sorted(set(cfg) - set(SHARD_KEYS))
        if unknown:
            raise ConfigError(f"data.shards.{unknown[0]}: unknown key; expected {', '.join(SHARD_KEYS)}")
        block = cfg.get("shuffle_buffer", 1000)
        if isinstance(block, bool) or not isinstance(block, int) or block < 0:
            raise ConfigError(f"data.shards.shuffle_buffer: expected an integer >= 0, got {block!r}")
        return cls(_parse_sets(cfg), seed, block, bool(cfg.get("resampled", False)))

    def fingerprint(self) -> str:
        """Changes whenever the lanes' positions would mean other records (urls, weights, seed, ...)."""
        spec = [[s.urls, s.weight] for s in self.sets], self.seed, self.block, self.resampled
        return hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:16]

    def pass_urls(self, set_idx: int, pass_idx: int) -> list[str]:
        """The shard order of one pass (the same on every slot)."""
        urls = list(self.sets[set_idx].urls)
        stable_rng(self.seed, "shards", set_idx, pass_idx).shuffle(urls)
        return urls

    def slot_urls(self, set_idx: int, slot: int, n_slots: int, pass_idx: int) -> tuple[list[str], bool]:
        """(the shards slot `slot` reads in a pass, whether it keeps only every n_slots-th record)."""
        order = self.pass_urls(set_idx, pass_idx)
        if len(order) < n_slots:
            return order, True
        return order[slot::n_slots], False

    def resampled_url(self, set_idx: int, slot: int, draw: int) -> str:
        urls = self.sets[set_idx].urls
        return urls[int(stable_uniform(self.seed, "resample", set_idx, slot, draw) * len(urls))]

    def plan(self, world: int, n_lanes: int) -> list[str]:
        """One line per shard set saying how it is split over the slots (logged when training starts)."""
        n_slots, lines = world * n_lanes, []
        for s in self.sets:
            head = f"data: {s.pattern} ({len(s.urls)} shards, weight {s.weight:g}) on {world} rank(s) x "
            head += f"{n_lanes} worker(s) = {n_slots} slot(s): "
            if self.resampled:
                lines.append(head + "resampled, each slot draws shards with replacement (seeded)")
            elif len(s.urls) < n_slots:
                lines.append(
                    head + f"fewer shards than slots, so every slot reads every shard and keeps 1 sample in "
                    f"{n_slots} (data.shards.resampled=true draws shards per slot instead)"
                )
            else:
                lo, hi = len(s.urls) // n_slots, -(-len(s.urls) // n_slots)
                lines.append(head + f"{lo}-{hi} shard(s) per slot and pass, reshuffled every pass")
        return lines

    def _open_pass(
        self, set_idx: int, slot: int, n_slots: int, pass_idx: int, pos: list[int] | None, skips: SkipCounter
    ) -> Iterator[tuple[dict[str, Any], list[int]]]:
        shard_i, rec_i, j = pos if pos else (0, 0, 0)
        if self.resampled:
            split = False
            urls: Iterator[str] = (self.resampled_url(set_idx, slot, t) for t in itertools.count(shard_i))
        else:
            mine, split = self.slot_urls(set_idx, slot, n_slots, pass_idx)
            urls = iter(mine[shard_i:])
        for t, url in enumerate(urls, start=shard_i):
            for idx, record in iter_shard(url, skips, start=rec_i if t == shard_i else 0):
                j += 1
                if split and (j - 1) % n_slots != slot:
                    continue
                yield record, [t, idx + 1, j]

    def lane(
        self, rank: int, world: int, lane: int, n_lanes: int, state: dict | None, skips: SkipCounter
    ) -> MixedLane:
        """The endless record stream of slot (rank, lane), restored from `state` when given."""
        slot, n_slots = rank * n_lanes + lane, world * n_lanes
        states = MixedLane.source_states(state, len(self.sets))
        lanes = [
            BlockShuffledLane(
                lambda p, pos, sk, i=i: self._open_pass(i, slot, n_slots, p, pos, sk),
                self.block,
                (self.seed, "block", i, rank, lane, world, n_lanes),
                skips,
                f"data stream {s.pattern} (rank {rank} worker-lane {lane} of {world}x{n_lanes})",
                states[i],
            )
            for i, s in enumerate(self.sets)
        ]
        return MixedLane(lanes, [s.weight for s in self.sets], (self.seed, "mix", rank, lane), state)

    def inventory(self, skips: SkipCounter) -> Iterator[tuple[str, str]]:
        """(url, key) of every complete record in every shard (no member data is read)."""
        from synseg.data.train.shard_reader import shard_keys

        for s in self.sets:
            for url in dict.fromkeys(s.urls):
                for key in shard_keys(url, skips):
                    yield url, key


class ToySource:
    """The toy world made on the fly: sample i of the stream is `generate_sample(seed, split, i)`."""

    is_toy = True
    kind = "toy"

    def __init__(self, seed: int = 0, split: str = "train", image_size: int = 64) -> None:
        from synseg.data.toy import CATEGORIES, SPLITS, ToyWorldConfig

        if split not in SPLITS:
            raise ValueError(f"data.toy.split: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        self.seed, self.split, self.num_classes = seed, split, len(CATEGORIES)
        self.config = ToyWorldConfig(image_size=image_size)
        self.name = f"toy world (seed {seed}, split {split})"

    def fingerprint(self) -> str:
        return f"toy-{self.seed}-{self.split}"

    def sample(self, index: int) -> dict[str, Any]:
        import numpy as np

        from synseg.data.toy import generate_sample

        s = generate_sample(self.seed, self.split, index, self.config)
        labels = np.zeros(self.num_classes, dtype=bool)
        labels[list(s.labels)] = True
        return {"key": f"{self.split}-{index:09d}", "image": s.image, "caption": s.caption, "labels": labels}
