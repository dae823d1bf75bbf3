"""`SegmentationEvaluator`: zero-shot segmentation metrics over a whole split (see docs/eval-protocol.md).

mIoU comes from one dataset-level confusion matrix (never a mean of per-batch or per-image mIoU); classes
absent from both prediction and truth over the whole split are excluded from the mean. With background, the
prediction is the argmax over [a constant channel equal to the threshold, the class scores] (label 0 wins
ties), i.e. background wherever max_c score_c <= threshold. All states are torchmetrics states, summed across
DDP ranks at `compute`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from synseg.evaluation.metrics import RatioSums, confusion_jaccard, iou_from_confmat, synced_confmat

DIAGNOSTICS = ("fg_pixel_acc", "image_top1", "act_in", "act_bg", "act_absent")


class SegmentationEvaluator(nn.Module):
    """Zero-shot segmentation metrics over a whole split (DDP-safe: torchmetrics states, synced at
    compute)."""

    def __init__(
        self,
        class_names: list[str],
        has_background: bool,
        threshold: float = 0.5,
        thresholds: Sequence[float] | None = None,
        ignore_index: int = 255,
        clamp: bool = False,
    ) -> None:
        super().__init__()
        self.clamp = bool(clamp)  # GroupViT's rule: background below min(threshold, the image's best score)
        self.class_names = list(class_names)
        self.has_background = bool(has_background)
        self.num_classes = len(self.class_names)
        self.num_fg = self.num_classes - int(self.has_background)
        if self.num_fg < 1:
            raise ValueError(f"class_names {self.class_names}: expected at least one foreground class")
        self.threshold = float(threshold)
        self.ignore_index = ignore_index
        # The threshold grid only means something with a background channel.
        self.thresholds = [float(t) for t in thresholds] if thresholds and self.has_background else []
        self.jaccard = confusion_jaccard(self.num_classes, ignore_index)
        self.grid = nn.ModuleList(
            [confusion_jaccard(self.num_classes, ignore_index) for _ in self.thresholds]
        )
        self.diagnostics = RatioSums(DIAGNOSTICS)

    # ---- prediction ---------------------------------------------------------------------------------
    def _labels(self, best: Tensor, idx: Tensor, threshold: float) -> Tensor:
        """Label ids from the max / argmax over foreground scores (B, H, W)."""
        if not self.has_background:
            return idx
        if self.clamp:  # (B, 1, 1) per-image threshold; the image's best pixel is never background
            thr = torch.clamp(best.amax((1, 2), keepdim=True), max=threshold)
            return torch.where(best >= thr, idx + 1, torch.zeros_like(idx))
        return torch.where(best > threshold, idx + 1, torch.zeros_like(idx))

    def predict(self, scores: Tensor, threshold: float | None = None) -> Tensor:
        """(B, C_fg, H, W) scores -> (B, H, W) label ids (background = 0 when the set has one)."""
        best, idx = scores.max(1)
        return self._labels(best, idx, self.threshold if threshold is None else threshold)

    # ---- accumulation -------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, scores: Tensor, target: Tensor, present_scores: Tensor | None = None) -> None:
        """Adds a batch. scores (B, C_fg, H, W), target (B, H, W) long with `ignore_index`; optional
        present_scores (B, C_fg) image-level class scores used for image_top1 instead of max-over-pixels."""
        b, h, w = target.shape
        if scores.shape != (b, self.num_fg, h, w):
            raise ValueError(
                f"scores {tuple(scores.shape)} / target {tuple(target.shape)}: expected scores "
                f"(B, {self.num_fg}, H, W) at the target's (B, H, W)"
            )
        if present_scores is not None and present_scores.shape != (b, self.num_fg):
            raise ValueError(f"present_scores {tuple(present_scores.shape)}: expected ({b}, {self.num_fg})")
        scores, target = scores.float(), target.long()
        bad = ((target < 0) | (target >= self.num_classes)) & (target != self.ignore_index)
        if bool(bad.any()):
            raise ValueError(
                f"target label {int(target[bad][0])}: expected 0..{self.num_classes - 1} "
                f"or {self.ignore_index} (ignore)"
            )
        best, idx = scores.max(1)  # (B, H, W) each
        self.jaccard.update(self._labels(best, idx, self.threshold), target)
        for thr, metric in zip(self.thresholds, self.grid, strict=True):
            metric.update(self._labels(best, idx, thr), target)
        self.diagnostics.update(self._diagnostics(scores, target, idx, present_scores))

    def _diagnostics(
        self, scores: Tensor, target: Tensor, fg_argmax: Tensor, present_scores: Tensor | None
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """(numerator, denominator) sums of the threshold-free and collapse diagnostics for one batch."""
        b, c = scores.shape[:2]
        off = int(self.has_background)
        valid = target != self.ignore_index  # (B, H, W)
        fg = valid & (target >= off)
        fg_label = (target - off).clamp(0, c - 1)  # (B, H, W) channel of the true class
        # Which labels each image contains: (B, num_classes + 1), last bin = ignored pixels.
        lab = torch.where(valid, target, self.num_classes).flatten(1)
        counts = torch.zeros(b, self.num_classes + 1, device=target.device, dtype=torch.long)
        counts.scatter_add_(1, lab, torch.ones_like(lab))
        present = counts[:, off : self.num_classes] > 0  # (B, C_fg)

        # (B, C_fg) image-level class scores: given, or max over pixels
        image_scores = present_scores if present_scores is not None else scores.flatten(2).amax(2)
        top1 = present.gather(1, image_scores.argmax(1, keepdim=True)).sum()

        true_score = scores.gather(1, fg_label.unsqueeze(1)).squeeze(1)  # (B, H, W)
        # Masked sums by multiplication, not bmm: a matmul may run in TF32 on GPUs.
        valid_sum = (scores * valid.unsqueeze(1)).sum((2, 3))  # (B, C_fg)
        n_valid = valid.flatten(1).sum(1)  # (B,)
        n_fg, absent = fg.sum(), ~present
        result = {
            "fg_pixel_acc": (((fg_argmax == fg_label) & fg).sum(), n_fg),
            "image_top1": (top1, torch.tensor(b)),
            "act_in": ((true_score.double() * fg).sum(), n_fg),
            "act_absent": ((valid_sum.double() * absent).sum(), (absent.sum(1) * n_valid).sum()),
        }
        if self.has_background:
            bg = target == 0  # (B, H, W)
            bg_sum = (scores * bg.unsqueeze(1)).sum((2, 3))  # (B, C_fg)
            result["act_bg"] = ((bg_sum.double() * present).sum(), (present.sum(1) * bg.sum((1, 2))).sum())
        return result

    # ---- results ------------------------------------------------------------------------------------
    def _miou_at(self) -> dict[float, float]:
        grid = zip(self.thresholds, self.grid, strict=True)
        return {thr: iou_from_confmat(synced_confmat(m))[1] for thr, m in grid}

    def compute(self) -> dict[str, Any]:
        """Metrics over everything accumulated on all ranks (mIoU and IoUs as fractions)."""
        iou, miou = iou_from_confmat(synced_confmat(self.jaccard))
        diag = {k: float(v) for k, v in self.diagnostics.compute().items()}
        out: dict[str, Any] = {
            "mIoU": miou,
            "per_class_iou": {name: float(v) for name, v in zip(self.class_names, iou.tolist(), strict=True)},
            **{k: diag[k] for k in DIAGNOSTICS},
            "inverted": bool(diag["act_in"] <= diag["act_bg"]),  # False when either is nan
            "threshold": self.threshold,
            "n_images": int(diag["image_top1/den"]),
        }
        if self.thresholds:
            out["mIoU_at"] = self._miou_at()
        return out

    def at(self, threshold: float) -> tuple[dict[str, float], float]:
        """(per-class IoU, mIoU) at one threshold of the grid (synced across ranks)."""
        metric = self.grid[self.thresholds.index(float(threshold))]
        iou, miou = iou_from_confmat(synced_confmat(metric))
        return {name: float(v) for name, v in zip(self.class_names, iou.tolist(), strict=True)}, miou

    def best_threshold(self) -> float:
        """The grid threshold with the highest mIoU (the first on ties); `threshold` without a grid."""
        scored = [(m, t) for t, m in self._miou_at().items() if not math.isnan(m)]
        if not scored:
            return self.threshold
        best = max(m for m, _ in scored)
        return next(t for m, t in scored if m == best)

    def reset(self) -> None:
        """Clears all states (call at the start of every evaluation)."""
        self.jaccard.reset()
        for metric in self.grid:
            metric.reset()
        self.diagnostics.reset()
