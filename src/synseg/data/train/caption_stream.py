"""The training stream shared by every method: batches of images, caption tokens and caption categories.

Every rank gets exactly `num_batches` batches; within a rank, worker w builds the batches k with
k % num_workers == w, so the DataLoader's round robin returns them in order. On the toy source, batch k of
rank r holds the toy samples ((start_step + k) * world_size + r) * B + i, i < B: the order is a pure
function of (seed, global sample index) and a resumed run continues exactly where it stopped.

Shard and hf sources: global batch k is built from *lane* k % num_workers of its rank, an endless record
stream whose order is a pure function of (seed, rank, lane, world size, lanes, pass) (`sources.py`). After
a resume at step s, worker w serves lane (s + w) % num_workers, so every lane continues its own stream.
Each batch carries `stream` = {rank, lane, batch, state}: the lane's position after the batch, which the
datamodule records when the batch is consumed (`stream_state`) and saves in the checkpoint."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from synseg.data.train.records import DecodeOptions, SkipCounter, decode_record
from synseg.data.transforms import ImageTransform
from synseg.errors import DataStreamError


class CaptionTokenizer:
    """The open_clip tokenizer of a backbone, made lazily in each worker. Captions only: category prompts are
    embedded by the model (its text tower's own tokenizer and prompt cache), so they are tokenised once."""

    def __init__(self, backbone: str) -> None:
        self.backbone = backbone
        self._tok = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tok": None}

    @property
    def tokenizer(self):
        if self._tok is None:
            import open_clip

            from synseg.clip_configs import register_clip_configs

            register_clip_configs()
            self._tok = open_clip.get_tokenizer(self.backbone)
        return self._tok

    def captions(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)  # (B, L)


def next_samples(
    records: Iterator[dict[str, Any]], lane: Any, n: int, skips: SkipCounter, options: DecodeOptions
) -> list[dict[str, Any]]:
    """The next `n` usable samples {"key", "url", "image", "caption"} of a lane's records (skips counted)."""
    samples = []
    while len(samples) < n:
        rec = next(records)
        decoded = decode_record(rec, skips, options)
        if decoded is None:
            continue
        lane.used()
        skips.used()
        key, url = str(rec.get("__key__", "")), str(rec.get("__url__", ""))
        samples.append({"key": key, "url": url, "image": decoded[0], "caption": decoded[1]})
    return samples


class CaptionStream(IterableDataset):
    """Yields whole batches (dicts); use with `DataLoader(batch_size=None)`."""

    def __init__(
        self,
        source: Any,
        batch_size: int,
        num_batches: int,
        tagger: Any,
        tokenizer: CaptionTokenizer,
        transform: ImageTransform,
        max_categories: int = 4,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        lane_states: list[Any] | None = None,
        decode_options: DecodeOptions | None = None,
        max_consecutive_skips: int | None = None,
    ) -> None:
        self.source, self.batch_size, self.num_batches = source, batch_size, num_batches
        self.tagger, self.tokenizer, self.transform = tagger, tokenizer, transform
        self.k, self.rank, self.world_size = max_categories, rank, world_size
        self.start_step = start_step
        self.lane_states = lane_states
        self.decode_options = decode_options or DecodeOptions()
        self.max_consecutive_skips = max_consecutive_skips

    def __len__(self) -> int:
        # The length of the whole (single) epoch: Lightning resumes mid-epoch at batch `start_step` and must
        # end the epoch after the `num_batches` remaining ones, not restart it.
        return self.start_step + self.num_batches

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        return (info.id, info.num_workers) if info is not None else (0, 1)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        w, n_workers = self._worker()
        my_batches = range(w, self.num_batches, n_workers)
        lane_id = (self.start_step + w) % n_workers
        if getattr(self.source, "is_toy", False):
            for k in my_batches:
                step = self.start_step + k
                first = (step * self.world_size + self.rank) * self.batch_size
                samples = [self.source.sample(first + i) for i in range(self.batch_size)]
                yield self._batch(samples, Counter(), Counter(), self._stream(lane_id, step, None))
            return
        skips = SkipCounter(
            limit=self.max_consecutive_skips,
            source=f"{self.source.name} (rank {self.rank} worker {w})",
        )
        states = self.lane_states or [None] * n_workers
        if len(states) != n_workers:  # a DataLoader with other workers than the datamodule's
            if any(s is not None for s in states):
                raise DataStreamError(
                    f"{self.source.name}: resumed stream positions are for {len(states)} worker(s), the "
                    f"DataLoader has {n_workers}; build it with data.num_workers workers"
                )
            states = [None] * n_workers
        lane = self.source.lane(self.rank, self.world_size, lane_id, n_workers, states[lane_id], skips)
        records = iter(lane)
        for k in my_batches:
            skipped, converted = Counter(skips.counts), Counter(skips.converted)
            samples = next_samples(records, lane, self.batch_size, skips, self.decode_options)
            stream = self._stream(lane_id, self.start_step + k, lane.state())
            yield self._batch(samples, skips.counts - skipped, skips.converted - converted, stream)

    def _stream(self, lane: int, step: int, state: Any) -> dict[str, Any]:
        return {"rank": self.rank, "lane": lane, "batch": step, "state": state}

    def _batch(
        self, samples: list[dict[str, Any]], skipped: Counter, converted: Counter, stream: dict[str, Any]
    ) -> dict[str, Any]:
        captions = [s["caption"] for s in samples]
        categories = [cats[: self.k] for cats in self.tagger.tag(captions)]
        valid = torch.zeros(len(samples), self.k, dtype=torch.bool)
        for b, cats in enumerate(categories):
            valid[b, : len(cats)] = True
        batch = {
            "images": self.transform([s["image"] for s in samples]),  # (B, 3, S, S)
            "caption_tokens": self.tokenizer.captions(captions),  # (B, L)
            "captions": captions,
            "categories": [cats + [""] * (self.k - len(cats)) for cats in categories],
            "category_valid": valid,  # (B, K)
            "keys": [s["key"] for s in samples],
            "skipped": {reason: int(n) for reason, n in skipped.items()},
            "converted": {kind: int(n) for kind, n in converted.items()},
            "no_category": int((~valid.any(1)).sum()),
            "stream": stream,  # popped by CaptionDataModule.on_before_batch_transfer
        }
        if "labels" in samples[0]:  # toy ground-truth image labels, for diagnostics only
            batch["image_labels"] = torch.from_numpy(np.stack([s["labels"] for s in samples]))
        return batch
