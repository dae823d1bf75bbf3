"""Where image-caption records come from: the toy world (on the fly), local tar shards, or a Hugging Face
`datasets` stream. Each source yields records for one *slot* (rank x worker) of one pass over the data."""

from __future__ import annotations

import glob
import logging
import os
import random
from collections.abc import Iterator
from typing import Any

from synseg.data.records import SkipCounter
from synseg.data.tar_reader import BrokenShardError, iter_tar_records

log = logging.getLogger(__name__)
SOURCES = ("toy", "shards", "hf", "dense")  # dense: toy images with masks, only for decoder pretraining


def expand_urls(urls: str | list[str]) -> list[str]:
    """Expands globs and `{000000..000009}` brace ranges into a sorted list of shard paths."""
    from braceexpand import braceexpand

    patterns = [urls] if isinstance(urls, str) else list(urls)
    out: list[str] = []
    for pattern in patterns:
        for expanded in braceexpand(str(pattern)):
            out.extend(sorted(glob.glob(expanded)) if any(c in expanded for c in "*?[") else [expanded])
    return out


def buffer_shuffle(records: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """Approximate shuffle of a stream with a buffer of `size` (0 or 1: order kept)."""
    if size <= 1:
        yield from records
        return
    buf: list[dict] = []
    for rec in records:
        if len(buf) < size:
            buf.append(rec)
            continue
        i = rng.randrange(size)
        buf[i], rec = rec, buf[i]
        yield rec
    rng.shuffle(buf)
    yield from buf


class ShardSource:
    """Local webdataset tar shards. Shards are shuffled with the same seed on every rank, then split by slot;
    with fewer shards than slots, every slot reads all shards and keeps every n-th sample."""

    def __init__(self, urls: str | list[str], seed: int = 0, shuffle_buffer: int = 0) -> None:
        self.urls = expand_urls(urls)
        if not self.urls:
            raise ValueError(
                f"data.urls: the shard pattern {urls!r} matched no files; expected tar shards "
                "such as data/cc3m/cc3m-{000000..000331}.tar or data/shards/*.tar"
            )
        missing = [u for u in self.urls if not os.path.exists(u)]
        if missing:
            raise ValueError(f"data.urls: {len(missing)} shard(s) do not exist, e.g. {missing[0]!r}")
        self.seed, self.shuffle_buffer = seed, shuffle_buffer

    def records(
        self, rank: int, world: int, worker: int, n_workers: int, pass_idx: int, skips: SkipCounter
    ) -> Iterator[dict[str, Any]]:
        slot, n_slots = rank * n_workers + worker, world * n_workers
        urls = list(self.urls)
        random.Random(self.seed + pass_idx).shuffle(urls)  # same order on every rank and worker
        by_shard = len(urls) >= n_slots
        mine = urls[slot::n_slots] if by_shard else urls

        def stream() -> Iterator[dict[str, Any]]:
            j = 0
            for url in mine:
                try:
                    for rec in iter_tar_records(url):
                        if by_shard or j % n_slots == slot:
                            yield rec
                        j += 1
                except BrokenShardError:
                    skips.skip("shard_broken", url)

        rng = random.Random(hash((self.seed, slot, pass_idx)))
        yield from buffer_shuffle(stream(), self.shuffle_buffer, rng)


def _keep_raw_fields() -> None:
    # datasets' webdataset builder decodes .txt as UTF-8 and .json inside its generator, so one bad caption
    # would end the whole stream. Keep those fields as bytes; `records.decode_record` decodes and counts.
    from datasets.packaged_modules.webdataset import webdataset as wds

    wds.WebDataset.DECODERS = {**wds.WebDataset.DECODERS, "txt": bytes, "json": bytes}


class HFSource:
    """A Hugging Face `datasets` stream (`pixparse/cc3m-wds`, or `webdataset` with local `data_files`), split
    by slot with `split_dataset_by_node`; images are not decoded by `datasets` (broken ones are counted)."""

    def __init__(
        self,
        path: str,
        name: str | None = None,
        split: str = "train",
        data_files: str | list[str] | None = None,
        seed: int = 0,
        shuffle_buffer: int = 0,
    ) -> None:
        self.path, self.name, self.split, self.seed = path, name, split, seed
        self.data_files = {split: expand_urls(data_files)} if data_files else None
        if data_files and not self.data_files[split]:
            raise ValueError(f"data.hf.data_files: {data_files!r} matched no files")
        self.shuffle_buffer = shuffle_buffer
        self._open()  # fail early, in the main process, with a clear message

    def _open(self):
        import datasets

        _keep_raw_fields()
        try:
            ds = datasets.load_dataset(
                self.path, self.name, split=self.split, data_files=self.data_files, streaming=True
            )
        except Exception as err:
            raise ValueError(
                f"data.hf.path: cannot open Hugging Face dataset {self.path!r} "
                f"(split {self.split!r}): {type(err).__name__}: {err}. Check the name, the network "
                "(HF_HUB_OFFLINE) and HF_TOKEN, or use data=shards with local tar files."
            ) from err
        return ds.decode(False)

    def records(
        self, rank: int, world: int, worker: int, n_workers: int, pass_idx: int, skips: SkipCounter
    ) -> Iterator[dict[str, Any]]:
        """Split by rank with `split_dataset_by_node`; inside a DataLoader worker, `datasets` itself gives
        each worker its share of the rank's shards (so `worker` is not used here)."""
        from datasets.distributed import split_dataset_by_node

        ds = self._open()
        if self.shuffle_buffer > 1:
            ds = ds.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
            ds.set_epoch(pass_idx)
        ds = split_dataset_by_node(ds, rank=rank, world_size=world)
        try:
            yield from ds
        except Exception as err:  # a broken file mid-stream ends this pass, counted
            skips.skip(
                "shard_broken", f"{self.path} rank {rank} worker {worker}", f"({type(err).__name__}: {err})"
            )


class ToySource:
    """The toy world made on the fly: sample i of the stream is `generate_sample(seed, split, i)`."""

    is_toy = True

    def __init__(self, seed: int = 0, split: str = "train", image_size: int = 64) -> None:
        from synseg.data.toy import CATEGORIES, SPLITS, ToyWorldConfig

        if split not in SPLITS:
            raise ValueError(f"data.toy.split: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        self.seed, self.split, self.num_classes = seed, split, len(CATEGORIES)
        self.config = ToyWorldConfig(image_size=image_size)

    def sample(self, index: int) -> dict[str, Any]:
        import numpy as np

        from synseg.data.toy import generate_sample

        s = generate_sample(self.seed, self.split, index, self.config)
        labels = np.zeros(self.num_classes, dtype=bool)
        labels[list(s.labels)] = True
        return {"key": f"{self.split}-{index:09d}", "image": s.image, "caption": s.caption, "labels": labels}
