"""Toy images with masks from the disjoint `dense` split: the toy analogue of PhraseCut, used only to
pretrain the stand-in CLIPSeg decoder with dense BCE (never by a weakly-supervised run)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from synseg.data.transforms import ImageTransform


class DenseToyStream(IterableDataset):
    """Batches {"images": (B,3,S,S), "masks": (B,S,S) long, "labels": (B,C) bool} of toy split `dense`.

    Batch k of rank r holds samples (k * world_size + r) * B + i, i < B (workers take every n-th batch): a
    deterministic stream that a resumed run continues at batch `start_step`, disjoint across DDP ranks."""

    def __init__(
        self,
        batch_size: int,
        num_batches: int,
        transform: ImageTransform,
        seed: int = 0,
        image_size: int = 64,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        from synseg.data.toy import CATEGORIES, ToyWorldConfig

        self.batch_size, self.num_batches, self.transform, self.seed = (
            batch_size,
            num_batches,
            transform,
            seed,
        )
        self.config = ToyWorldConfig(image_size=image_size)
        self.start_step, self.rank, self.world_size = start_step, rank, world_size
        self.num_classes = len(CATEGORIES)

    def __len__(self) -> int:
        return self.start_step + self.num_batches  # the whole epoch (see CaptionStream.__len__)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        from synseg.data.toy import generate_sample

        info = get_worker_info()
        w, n = (info.id, info.num_workers) if info else (0, 1)
        for j in range(w, self.num_batches, n):
            k = self.start_step + j  # batch k of the run: resumes exactly
            first = (k * self.world_size + self.rank) * self.batch_size
            samples = [
                generate_sample(self.seed, "dense", first + i, self.config) for i in range(self.batch_size)
            ]
            labels = np.zeros((len(samples), self.num_classes), dtype=bool)
            for b, s in enumerate(samples):
                labels[b, list(s.labels)] = True
            yield {
                "images": self.transform([s.image for s in samples]),
                "masks": torch.from_numpy(np.stack([s.mask for s in samples]).astype(np.int64)),
                "labels": torch.from_numpy(labels),
            }
