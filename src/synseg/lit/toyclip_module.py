"""`ToyClipModule`: trains an open_clip CLIP with open_clip's own `ClipLoss` (the stand-in CLIP of the toy
world), and measures zero-shot image classification on segmentation folders (`val/top1`, `test/top1`)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from synseg.lit.distributed import rank_and_world
from synseg.lit.optim import optimizer_config
from synseg.models.registry import create_model

log = logging.getLogger(__name__)


class ToyClipModule(L.LightningModule):
    """CLIP training with `open_clip.loss.ClipLoss` (local loss, gather with grad under DDP)."""

    def __init__(
        self,
        arch: str,
        model_name: str,
        pretrained: str | None,
        optimizer: Any,
        warmup_steps: int,
        prompt_template: str,
        export_dir: str | None,
        grayscale_p: float,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["optimizer"])  # checkpoints hold plain data
        self.optimizer_factory = optimizer
        self.model = create_model(arch, model_name=model_name, pretrained=pretrained)
        self.loss_fn = None
        self.class_text: torch.Tensor | None = None
        self._hits = {"val": [0, 0], "test": [0, 0]}

    def setup(self, stage: str) -> None:
        from open_clip.loss import ClipLoss

        self.loss_fn = ClipLoss(
            local_loss=True,
            gather_with_grad=True,
            cache_labels=True,
            rank=self.global_rank,
            world_size=self.trainer.world_size if self._trainer else 1,
        )

    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for n, p in self.model.named_parameters():
            (no_decay if p.ndim < 2 or "logit_scale" in n or "embedding" in n else decay).append(p)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        return optimizer_config(
            groups, self.optimizer_factory, self.hparams.warmup_steps, self.trainer.max_steps
        )

    def random_grayscale(self, images: torch.Tensor) -> torch.Tensor:
        """Turns a random `grayscale_p` fraction of a normalised batch grey (luma), still normalised.

        Colour is the easy cue of the toy world; on a grey image only shape can match its caption."""
        p = self.hparams.grayscale_p
        if p <= 0:
            return images
        tf = self.trainer.datamodule.transform
        mean, std = tf.mean.to(images), tf.std.to(images)
        rgb = images * std + mean
        luma = (rgb * torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)).sum(1, True)
        grey = (luma.expand_as(rgb) - mean) / std
        # Draws for the whole global batch (every rank's global RNG is in the same state), this rank's rows
        # kept: W DDP processes x B/W turn the same images grey as 1 process x B.
        rank, world = rank_and_world()
        b = images.shape[0]
        draws = torch.rand(b * world, 1, 1, 1)[rank * b : (rank + 1) * b].to(images.device)
        return torch.where(draws < p, grey, images)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images = self.random_grayscale(batch["images"])
        image_features, text_features, logit_scale = self.model(images, batch["caption_tokens"])
        loss = self.loss_fn(image_features, text_features, logit_scale)
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, math.log(100))
        bs = batch["images"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/logit_scale", logit_scale, batch_size=bs)
        return loss

    # ---- zero-shot classification on segmentation folders ---------------------------------------------
    @torch.no_grad()
    def encode_classes(self, names: list[str]) -> torch.Tensor:
        """(C, D) normalised prompt embeddings of class names (background excluded by the caller)."""
        import open_clip

        tok = open_clip.get_tokenizer(self.hparams.model_name)
        text = tok([self.hparams.prompt_template.format(n) for n in names]).to(self.device)
        return F.normalize(self.model.encode_text(text), dim=-1)

    def _start(self, split: str) -> None:
        names = self.trainer.datamodule.class_names
        self.has_background = names[0] == "background"
        self.class_text = self.encode_classes(names[1:] if self.has_background else names)
        self._hits[split] = [0, 0]

    def _step(self, split: str, batch: dict[str, Any]) -> None:
        from synseg.evaluation.runner import same_size_groups

        for images, masks, _ in same_size_groups(batch):  # uint8 images of the eval sets
            x = self.trainer.datamodule.normalize(images.to(self.device))
            img = F.normalize(self.model.encode_image(x), dim=-1)  # (B, D)
            pred = (img @ self.class_text.T).argmax(1) + int(self.has_background)  # label id of the top class
            for b in range(pred.shape[0]):
                present = torch.unique(masks[b])
                self._hits[split][0] += int((present.to(pred.device) == pred[b]).any())
                self._hits[split][1] += 1

    def _end(self, split: str) -> None:
        hits = torch.tensor(self._hits[split], dtype=torch.float64, device=self.device)
        hits = self.all_gather(hits).reshape(-1, 2).sum(0) if self.trainer.world_size > 1 else hits
        self.log(f"{split}/top1", float(hits[0] / hits[1].clamp(min=1)), rank_zero_only=True)

    def on_validation_epoch_start(self) -> None:
        self._start("val")

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._end("val")

    def on_test_epoch_start(self) -> None:
        self._start("test")

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._end("test")

    # ---- export the trained CLIP as an open_clip checkpoint ----------------------------------------
    def export(self, metrics: dict[str, float], run_dir: Path) -> Path | None:
        """Writes `export_dir/<model_name>.pt` (an open_clip state dict) and `metrics.json` beside it."""
        if not self.hparams.export_dir or self.global_rank != 0:
            return None
        out = Path(self.hparams.export_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.hparams.model_name}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(self.model.state_dict(), tmp)
        tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        log.info("stand-in CLIP saved to %s", path)
        return path
