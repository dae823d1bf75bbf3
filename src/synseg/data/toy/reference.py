"""Numpy reference levels every report shows: confusion-matrix mIoU, all-background floor, patch-grid ceiling.

mIoU follows the evaluation protocol: one confusion matrix over the whole set, classes absent from both
prediction and truth excluded, label 255 ignored."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from synseg.data.toy.shapes import CATEGORIES

NUM_CLASSES = len(CATEGORIES) + 1  # background + categories


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """(C, C) int64 counts, rows = truth, columns = prediction; pixels with truth `ignore_index` skipped."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    valid = gt != ignore_index
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    if g.size and (g.min() < 0 or g.max() >= num_classes):
        raise ValueError(f"gt labels must be in [0, {num_classes}) or {ignore_index}")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"pred labels must be in [0, {num_classes}) where gt is valid")
    return np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def per_class_iou(conf: np.ndarray) -> np.ndarray:
    """IoU per class, NaN for classes absent from both prediction and truth."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def miou_from_confusion(conf: np.ndarray) -> float:
    """Mean IoU over the classes present in prediction or truth (NaN if none)."""
    iou = per_class_iou(conf)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


def _as_list(masks: Iterable[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        return [masks]
    return [np.asarray(m) for m in masks]


def patch_majority(
    mask: np.ndarray, patch: int = 8, num_classes: int = NUM_CLASSES, ignore_index: int = 255
) -> np.ndarray:
    """Per-patch majority label (ignored pixels do not vote; all-ignored patch -> 0), upsampled nearest."""
    h, w = mask.shape
    gh, gw = -(-h // patch), -(-w // patch)
    padded = np.full((gh * patch, gw * patch), ignore_index, dtype=np.int64)
    padded[:h, :w] = mask
    lab = padded.reshape(gh, patch, gw, patch).transpose(0, 2, 1, 3).reshape(gh * gw, patch * patch)
    lab = np.where(lab == ignore_index, num_classes, lab)  # extra bin for ignored pixels
    offsets = np.arange(gh * gw)[:, None] * (num_classes + 1)
    counts = np.bincount((lab + offsets).ravel(), minlength=gh * gw * (num_classes + 1))
    majority = counts.reshape(gh * gw, num_classes + 1)[:, :num_classes].argmax(axis=1).reshape(gh, gw)
    return np.repeat(np.repeat(majority, patch, axis=0), patch, axis=1)[:h, :w]


def patch_grid_ceiling(
    masks: Iterable[np.ndarray] | np.ndarray, patch: int = 8, num_classes: int = NUM_CLASSES
) -> float:
    """mIoU of perfect per-patch labels (each patch's majority, upsampled nearest): the grid's ceiling."""
    conf = np.zeros((num_classes, num_classes), np.int64)
    for m in _as_list(masks):
        conf += confusion_matrix(patch_majority(m, patch, num_classes), m, num_classes)
    return miou_from_confusion(conf)


def all_background_miou(masks: Iterable[np.ndarray] | np.ndarray, num_classes: int = NUM_CLASSES) -> float:
    """mIoU of predicting background (0) everywhere: the floor a collapsed model sits on."""
    conf = np.zeros((num_classes, num_classes), np.int64)
    for m in _as_list(masks):
        conf += confusion_matrix(np.zeros_like(m), m, num_classes)
    return miou_from_confusion(conf)


def background_fraction(masks: Iterable[np.ndarray] | np.ndarray, ignore_index: int = 255) -> float:
    """Fraction of non-ignored pixels that are background (label 0), over the whole set."""
    bg = total = 0
    for m in _as_list(masks):
        valid = m != ignore_index
        bg += int(np.count_nonzero(m[valid] == 0))
        total += int(np.count_nonzero(valid))
    return bg / max(total, 1)
