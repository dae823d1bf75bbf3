"""`SegmentationEvalCallback`: zero-shot segmentation metrics of a LightningModule on the val / test folders,
plus the wandb helpers it uses (prediction / ground-truth mask overlays, a per-class IoU table)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from synseg.evaluation.evaluator import SegmentationEvaluator

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95
LOGGED = ("mIoU", "fg_pixel_acc", "image_top1", "act_in", "act_bg", "act_absent", "threshold")


# ---- wandb helpers (plain data; wandb itself is imported by the logger) -------------------------------
def class_labels(class_names: Sequence[str], ignore_index: int = 255) -> dict[int, str]:
    """wandb `class_labels`: label id -> name, with the ignore label."""
    return {**{i: n for i, n in enumerate(class_names)}, ignore_index: "ignore"}


def mask_overlays(pred: np.ndarray, target: np.ndarray, labels: dict[int, str]) -> dict[str, dict[str, Any]]:
    """The `masks=` argument of a wandb.Image: prediction and ground truth (H, W) label maps."""
    return {
        "prediction": {"mask_data": pred, "class_labels": labels},
        "ground_truth": {"mask_data": target, "class_labels": labels},
    }


def iou_table_rows(per_class_iou: dict[str, float]) -> list[list[Any]]:
    """[[class, IoU]] rows for a wandb.Table; classes excluded from the mean (nan) get None."""
    return [[name, None if math.isnan(v) else v] for name, v in per_class_iou.items()]


def to_uint8(image: Tensor, mean: Tensor | None = None, std: Tensor | None = None) -> np.ndarray:
    """A normalised (3, H, W) image as (H, W, 3) uint8: un-normalised with mean / std when known, else
    min-max scaled."""
    x = image.detach().float().cpu()
    if mean is not None and std is not None:
        x = x * std.reshape(3, 1, 1).cpu() + mean.reshape(3, 1, 1).cpu()
    else:
        x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-8)
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of (B, C, h, w) to (B, C, *size)."""
    return F.interpolate(x.float(), size=tuple(size), mode="bilinear", align_corners=False)


def wandb_logger(trainer: L.Trainer) -> WandbLogger | None:
    """The first WandbLogger attached to the trainer, if any."""
    return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)


# ---- the callback ---------------------------------------------------------------------------------------
class SegmentationEvalCallback(L.Callback):
    """Runs a SegmentationEvaluator over the val / test dataloaders of a LightningModule that implements
    `segment(images) -> (B, C_fg, H, W)` scores for the datamodule's foreground classes, and logs
    `val/<dataset>/{mIoU, fg_pixel_acc, image_top1, act_in, act_bg, act_absent, threshold}` (test:
    `test/<dataset>/...`).

    Results (the evaluator's compute() dict) are stored in `pl_module.eval_results[split]`. Under DDP each
    rank evaluates its own samples and the torchmetrics states are summed at compute, so every rank logs the
    same values (logged with a max-reduction, which is exact for identical values)."""

    def __init__(
        self,
        dataset_name: str = "toy",
        threshold: float = 0.5,
        select_threshold_on_val: bool = False,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        n_images: int = 16,
        log_images: bool = True,
    ) -> None:
        super().__init__()
        self.dataset_name = dataset_name
        self.threshold = float(threshold)
        self.test_threshold = float(threshold)  # replaced by the val best threshold when selected
        self.select_threshold_on_val = select_threshold_on_val
        self.thresholds = [float(t) for t in thresholds]
        self.n_images = n_images
        self.log_images = log_images
        self.evaluators: dict[str, SegmentationEvaluator] = {}
        self._samples: list[dict[str, Any]] = []
        self._skip_warned = False

    # ---- shared by val and test --------------------------------------------------------------------
    def _active(self, pl_module: L.LightningModule) -> bool:
        if hasattr(pl_module, "segment"):
            return True
        if not self._skip_warned:
            log.warning(
                "%s has no segment(images); segmentation evaluation skipped", type(pl_module).__name__
            )
            self._skip_warned = True
        return False

    def _start(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        if not self._active(pl_module):
            return
        names = list(trainer.datamodule.class_names)
        threshold = self.test_threshold if split == "test" else self.threshold
        evaluator = SegmentationEvaluator(names, names[0] == "background", threshold, self.thresholds)
        self.evaluators[split] = evaluator.to(pl_module.device)
        self._samples = []

    def _batch(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict[str, Any], split: str
    ) -> None:
        evaluator = self.evaluators.get(split)
        if evaluator is None:
            return
        images, target = batch["image"], batch["mask"]
        scores = pl_module.segment(images)  # (B, C_fg, h, w)
        if scores.shape[-2:] != target.shape[-2:]:
            scores = resize_to(scores, target.shape[-2:])
        evaluator.update(scores, target)
        if split == "val" and self._want_images(trainer) and len(self._samples) < self.n_images:
            self._keep_samples(trainer, images, evaluator.predict(scores.float()), target, batch.get("key"))

    def _end(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        evaluator = self.evaluators.get(split)
        if evaluator is None:
            return
        results = evaluator.compute()  # collective under DDP: every rank calls it
        if split == "val" and self.select_threshold_on_val and evaluator.thresholds:
            results["best_threshold"] = evaluator.best_threshold()
        prefix = f"{split}/{self.dataset_name}"
        for key in LOGGED:
            pl_module.log(f"{prefix}/{key}", float(results[key]), sync_dist=True, reduce_fx="max")
        if trainer.sanity_checking:
            return
        if not hasattr(pl_module, "eval_results"):
            pl_module.eval_results = {}
        pl_module.eval_results[split] = results
        if "best_threshold" in results:
            self.test_threshold = results["best_threshold"]
        logger = wandb_logger(trainer)
        if logger is not None and split == "val" and self._samples:
            labels = class_labels(evaluator.class_names, evaluator.ignore_index)
            logger.log_image(
                key=f"{prefix}/examples",
                images=[s["image"] for s in self._samples],
                masks=[mask_overlays(s["pred"], s["target"], labels) for s in self._samples],
                caption=[s["key"] for s in self._samples],
                step=trainer.global_step,
            )
        if logger is not None and split == "test":
            logger.log_table(
                key=f"{prefix}/per_class_iou",
                columns=["class", "IoU"],
                data=iou_table_rows(results["per_class_iou"]),
                step=trainer.global_step,
            )
        self._samples = []

    # ---- example images ------------------------------------------------------------------------------
    def _want_images(self, trainer: L.Trainer) -> bool:
        return (
            self.log_images
            and self.n_images > 0
            and trainer.is_global_zero
            and not trainer.sanity_checking
            and wandb_logger(trainer) is not None
        )

    def _keep_samples(
        self, trainer: L.Trainer, images: Tensor, pred: Tensor, target: Tensor, keys: Sequence[str] | None
    ) -> None:
        """Keeps the first images of the (rank-0) val set with their prediction and ground truth."""
        transform = getattr(trainer.datamodule, "transform", None)
        mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
        if images.shape[-2:] != target.shape[-2:]:  # show the image at the mask's size
            images = resize_to(images, target.shape[-2:])
        for i in range(min(images.shape[0], self.n_images - len(self._samples))):
            self._samples.append(
                {
                    "image": to_uint8(images[i], mean, std),
                    "pred": pred[i].to(torch.uint8).cpu().numpy(),
                    "target": target[i].to(torch.uint8).cpu().numpy(),
                    "key": str(keys[i]) if keys is not None else str(len(self._samples)),
                }
            )

    # ---- Lightning hooks -----------------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer, pl_module, "val")

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._batch(trainer, pl_module, batch, "val")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer, pl_module, "test")

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._batch(trainer, pl_module, batch, "test")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end(trainer, pl_module, "test")
