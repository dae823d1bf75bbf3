"""`DensePretrainModule`: the stand-in for CLIPSeg's released weights on the toy world.

CLIPSeg's decoder was trained with dense masks (PhraseCut). Here the same SynSeg decoder is trained with a
per-pixel BCE on toy masks of the disjoint `dense` split: one phrase (a category name or a synonym) per
(image, category) pair, its mask as target; absent categories are negatives with an all-zero target.
Trained on `data=toy_dense` by `make dense-decoder`."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from synseg.lit.segmenter_base import FrozenBackboneSegmenter


class DensePretrainModule(FrozenBackboneSegmenter):
    """Dense BCE pretraining of the SynSeg decoder; `export_path` receives the head state dict."""

    def __init__(
        self,
        segmenter: dict[str, Any],
        optimizer: Any,
        warmup_steps: int,
        negatives_per_image: int,
        synonym_prob: float,
        export_path: str | None,
    ) -> None:
        super().__init__(segmenter, optimizer, warmup_steps)
        from synseg.data.toy import CATEGORIES, SYNONYMS

        self.categories, self.synonyms = list(CATEGORIES), SYNONYMS
        self.rng = random.Random(0)

    def phrase(self, c: int) -> str:
        name = self.categories[c]
        if self.rng.random() < self.hparams.synonym_prob and self.synonyms.get(name):
            name = self.rng.choice(self.synonyms[name])
        return self.segmenter.config["templates"][0].format(name)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, masks, labels = batch["images"], batch["masks"], batch["labels"]
        pairs: list[tuple[int, int]] = []
        for b in range(images.shape[0]):
            present = labels[b].nonzero().flatten().tolist()
            absent = [c for c in range(len(self.categories)) if c not in present]
            pairs += [(b, c) for c in present]
            pairs += [
                (b, c) for c in self.rng.sample(absent, min(self.hparams.negatives_per_image, len(absent)))
            ]
        index = torch.tensor([b for b, _ in pairs], device=images.device)
        cls = torch.tensor([c for _, c in pairs], device=images.device)
        cond, unit = self.segmenter.embed_prompts([self.phrase(c) for _, c in pairs])
        feats = self.backbone.encode_images(images)
        logits, _ = self.segmenter.pair_maps(feats, index, cond, unit)  # (P, 1, H, W)
        target_mask = masks[index]  # (P, H, W)
        target = (target_mask == (cls + 1)[:, None, None]).float()
        keep = (target_mask != 255).float()
        bce = F.binary_cross_entropy_with_logits(logits[:, 0], target, weight=keep, reduction="sum")
        loss = bce / keep.sum().clamp(min=1)
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        self.log("train/text_cache_hit_rate", self.backbone.cache_hit_rate, batch_size=images.shape[0])
        return loss

    def export(self, metrics: dict[str, float], run_dir: Path) -> Path | None:
        """Writes the run's Segmenter (see the base class) and, for `make dense-decoder`, the head state dict
        to `export_path` (atomically) with its metrics beside it."""
        import json

        from synseg.checkpoint_files import atomic_torch_save

        out = super().export(metrics, run_dir)
        if not self.hparams.export_path or self.global_rank != 0:
            return out
        path = Path(self.hparams.export_path)
        atomic_torch_save(self.head.state_dict(), path)
        path.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        return path
