"""`SegmentationEvalCallback`: zero-shot segmentation metrics of a LightningModule on the val / test folders,
plus the wandb helpers it uses (prediction / ground-truth mask overlays, a per-class IoU table)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from synseg.evaluation.evaluator import SegmentationEvaluator
from synseg.evaluation.protocol import TOY_THRESHOLD_FROM, Protocol, build_protocol
from synseg.evaluation.runner import set_protocol_classes, update_with_batch

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95
LOGGED = ("mIoU", "fg_pixel_acc", "image_top1", "act_in", "act_bg", "act_absent", "threshold", "n_images")


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
    """Evaluates a LightningModule's `segmenter` (synseg.models.Segmenter: `set_classes(names, templates)`,
    `class_scores(images) -> (B, C_fg, h, w)`) on every val / test set of the datamodule
    (`datamodule.eval_sets(split)`: the toy folders or real benchmarks, one dataloader each), under the
    evaluation `protocol` (configs/protocol: the same resize, sliding window and templates as `make eval`),
    and logs
    `val/<dataset>/{mIoU, fg_pixel_acc, image_top1, act_in, act_bg, act_absent, threshold}` (`test/...`).

    Background threshold: a with-background set whose protocol gives no threshold (toy, folder) is validated
    at `threshold` and, with `select_threshold_on_val`, its test uses the best threshold of the grid on val;
    benchmarks use the protocol's own (GroupViT's, TCL's). Results (the evaluator's compute() dicts) land in
    `pl_module.eval_results[split][dataset]`. Under DDP each rank scores its share of the images (every image
    once, see `data.eval_sets`) and the torchmetrics states are summed at compute, so every rank logs the same
    values (logged with a max-reduction, exact for identical values)."""

    def __init__(
        self,
        protocol: dict[str, Any] | None = None,
        threshold: float = 0.5,
        select_threshold_on_val: bool = False,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        n_images: int = 16,
        log_images: bool = True,
        score_budget: float = 1e8,
    ) -> None:
        super().__init__()
        self.protocol_cfg = dict(protocol or {})
        self.threshold = float(threshold)
        self.select_threshold_on_val = select_threshold_on_val
        self.thresholds = [float(t) for t in thresholds]
        self.n_images = n_images
        self.log_images = log_images
        self.score_budget = float(score_budget)
        self.evaluators: dict[str, list[SegmentationEvaluator]] = {}
        self._protocols: dict[str, list[Protocol]] = {}
        self._names: dict[str, list[str]] = {}
        self._current: tuple[str, int] | None = None
        self._samples: list[dict[str, Any]] = []
        self._skipped: dict[str, list[int]] = {}
        self._skip_warned = False

    # ---- shared by val and test --------------------------------------------------------------------
    def _active(self, pl_module: L.LightningModule) -> bool:
        if hasattr(pl_module, "segmenter"):
            return True
        if not self._skip_warned:
            log.warning("%s has no segmenter; segmentation evaluation skipped", type(pl_module).__name__)
            self._skip_warned = True
        return False

    def protocol_for(
        self, dataset: Any, split: str, image_size: int | None, selected: dict[str, float]
    ) -> tuple[Protocol, bool]:
        """(protocol of `dataset` for `split`, whether val selects its threshold). `selected`: the thresholds
        val chose for the weights being evaluated (the module's `val_thresholds`, kept in its checkpoints)."""
        protocol = build_protocol(dataset.name, dataset.has_background, self.protocol_cfg, image_size)
        own = protocol.has_background and protocol.threshold_source != "config"  # no threshold of its own
        selects = split == "val" and own and self.select_threshold_on_val
        if own:
            # toy_dev / toy_ood have no val set of their own: they take the threshold val chose on toy
            name = dataset.name if dataset.name in selected else TOY_THRESHOLD_FROM.get(dataset.name, "")
            thr = selected.get(name, self.threshold) if split == "test" else self.threshold
            source = "val-selected" if split == "test" and name in selected else "callback"
            protocol = replace(protocol, threshold=thr, threshold_source=source)
        return protocol, selects

    def _start(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        if not self._active(pl_module):
            return
        dm = trainer.datamodule
        sets = dm.eval_sets(split)
        self._names[split] = [ds.name for ds in sets]
        self._protocols[split], self.evaluators[split] = [], []
        for ds in sets:
            selected = getattr(pl_module, "val_thresholds", {})
            protocol, selects = self.protocol_for(ds, split, getattr(dm, "image_size", None), selected)
            evaluator = SegmentationEvaluator(
                list(ds.classes),
                ds.has_background,
                protocol.threshold or 0.5,
                self.thresholds if selects else None,
                ignore_index=ds.ignore_index,
                clamp=protocol.background == "clamp",
            )
            self._protocols[split].append(protocol)
            self.evaluators[split].append(evaluator.to(pl_module.device))
        self._skipped[split] = [0] * len(sets)
        self._current = None
        self._samples = []

    def _batch(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict[str, Any], split: str, idx: int
    ) -> None:
        evaluators = self.evaluators.get(split)
        if not evaluators:
            return
        evaluator, protocol = evaluators[idx], self._protocols[split][idx]
        if self._current != (split, idx):  # a new dataset: its class names, with the protocol's templates
            names = evaluator.class_names[int(evaluator.has_background) :]
            set_protocol_classes(pl_module.segmenter, names, protocol)
            self._current = (split, idx)
        self._skipped[split][idx] += len(batch.get("skipped", []))
        normalize = trainer.datamodule.normalize
        keep = None
        if split == "val" and idx == 0 and self._want_images(trainer) and len(self._samples) < self.n_images:
            keep = lambda scores, masks, names: self._keep_samples(batch, evaluator, scores, masks, names)
        with torch.no_grad():
            update_with_batch(
                evaluator,
                pl_module.segmenter.class_scores,
                lambda x: normalize(x.to(pl_module.device)),
                batch,
                protocol,
                self.score_budget,
                keep,
            )

    def _end(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        evaluators = self.evaluators.get(split)
        if evaluators is None:
            return
        if not hasattr(pl_module, "eval_results"):
            pl_module.eval_results = {}
        logger = wandb_logger(trainer)
        for name, evaluator, skipped in zip(
            self._names[split], evaluators, self._skipped[split], strict=True
        ):
            results = evaluator.compute()  # collective under DDP: every rank calls it, in the same order
            if evaluator.thresholds:  # the grid exists only where val selects the threshold:
                best = evaluator.best_threshold()  # then mIoU and per-class IoU are those at the chosen one
                results["mIoU_fixed_threshold"] = results["mIoU"]
                results["per_class_iou"], results["mIoU"] = evaluator.at(best)
                results.update(best_threshold=best, threshold=best)
            prefix = f"{split}/{name}"
            for key in LOGGED:
                pl_module.log(f"{prefix}/{key}", float(results[key]), sync_dist=True, reduce_fx="max")
            pl_module.log(f"{prefix}/skipped", float(skipped), sync_dist=True, reduce_fx="sum")
            if split == "val":  # per-class IoU over time (at the threshold logged beside it)
                for cls, iou in results["per_class_iou"].items():
                    value = float("nan") if iou is None else float(iou)
                    pl_module.log(f"{prefix}/iou/{cls}", value, sync_dist=True, reduce_fx="max")
            if trainer.sanity_checking:
                continue
            pl_module.eval_results.setdefault(split, {})[name] = results
            if "best_threshold" in results and hasattr(pl_module, "val_thresholds"):
                pl_module.val_thresholds[name] = float(results["best_threshold"])
            if logger is not None and split == "test":
                logger.log_table(
                    key=f"{prefix}/per_class_iou",
                    columns=["class", "IoU"],
                    data=iou_table_rows(results["per_class_iou"]),
                    step=trainer.global_step,
                )
        if logger is not None and split == "val" and self._samples and not trainer.sanity_checking:
            first = evaluators[0]
            labels = class_labels(first.class_names, first.ignore_index)
            logger.log_image(
                key=f"val/{self._names[split][0]}/examples",
                images=[s["image"] for s in self._samples],
                masks=[mask_overlays(s["pred"], s["target"], labels) for s in self._samples],
                caption=[s["key"] for s in self._samples],
                step=trainer.global_step,
            )
        self._samples = []
        self._current = None

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
        self,
        batch: dict[str, Any],
        evaluator: SegmentationEvaluator,
        scores: Tensor,
        masks: Tensor,
        mask_names: Sequence[str],
    ) -> None:
        """Keeps the first images of the (rank-0) first val set with their prediction and ground truth."""
        pred = evaluator.predict(scores.float())
        by_name = dict(zip(batch["mask_name"], range(len(batch["mask_name"])), strict=True))
        for j, mask_name in enumerate(mask_names):
            if len(self._samples) >= self.n_images:
                return
            i = by_name[mask_name]
            image = batch["image"][i]  # (3, H, W) uint8 at native size
            self._samples.append(
                {
                    "image": image.permute(1, 2, 0).cpu().numpy(),
                    "pred": pred[j].to(torch.uint8).cpu().numpy(),
                    "target": masks[j].to(torch.uint8).cpu().numpy(),
                    "key": str(batch["key"][i]),
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
        self._batch(trainer, pl_module, batch, "val", dataloader_idx)

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
        self._batch(trainer, pl_module, batch, "test", dataloader_idx)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end(trainer, pl_module, "test")
