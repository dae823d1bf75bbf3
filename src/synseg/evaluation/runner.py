"""Zero-shot evaluation of one dataset under one `Protocol`: native-resolution images are resized on their
short side, scored by a sliding window (all windows of a batch in one `segment` call), optionally refined
by PAMR per window, upsampled to the mask size and accumulated in a dataset-level `SegmentationEvaluator`.

Same-size images are batched; undecodable images (items with a "skip" reason) are counted and listed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader

from synseg.evaluation.evaluator import SegmentationEvaluator
from synseg.evaluation.inference import resize_short_side, slide_inference
from synseg.evaluation.pamr import pamr
from synseg.evaluation.protocol import Protocol
from synseg.models.segmenter import TRAINING_FREE


class Normalizer:
    """uint8 (B, 3, H, W) -> float, normalised with the backbone's mean / std, on `device`."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: str | torch.device) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.device = device

    def __call__(self, images: Tensor) -> Tensor:
        x = images.to(self.device, non_blocking=True).float().div_(255.0)
        return (x - self.mean) / self.std


def set_protocol_classes(segmenter: Any, names: Sequence[str], protocol: Protocol) -> None:
    """Gives `segmenter` the foreground class `names` under `protocol`: its templates, its background words
    first (NACLIP), and for a training-free model its softmax logit scale (NACLIP: 40)."""
    if getattr(segmenter, "kind", None) in TRAINING_FREE:  # softmax(scale * cos); not in the saved config
        segmenter.protocol_temperature = protocol.logit_scale
    segmenter.set_classes([*protocol.background_words, *names], list(protocol.templates))


WHOLE_IMAGE_MULTIPLE = 16  # whole-image inference pads to a multiple of this (the patch of ViT-B/16, toy 8)


def words_to_foreground(scores: Tensor, n_words: int) -> Tensor:
    """NACLIP's background words: (B, n_words + C_fg, H, W) query probabilities -> (B, C_fg, H, W) where a
    class keeps its probability only where it beats every background word. Then "best > threshold" is
    NACLIP's rule: the argmax over [background, classes] unless the top probability is below the threshold."""
    background = scores[:, :n_words].amax(1, keepdim=True)  # (B, 1, H, W)
    fg = scores[:, n_words:]
    return torch.where(fg > background, fg, torch.zeros_like(fg))


def _whole(score_fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """One forward of the whole image, zero-padded (the mean colour) to WHOLE_IMAGE_MULTIPLE and cropped."""
    h, w = x.shape[-2:]
    m = WHOLE_IMAGE_MULTIPLE
    return score_fn(F.pad(x, (0, (-w) % m, 0, (-h) % m)))[..., :h, :w]


def dense_scores(segment: Callable[[Tensor], Tensor], images: Tensor, protocol: Protocol) -> Tensor:
    """(B, 3, H, W) normalised images at native size -> (B, C_fg, H, W) foreground scores (with background
    words: the scores of the classes given after them, see `words_to_foreground`)."""
    h, w = images.shape[-2:]
    x = resize_short_side(images, protocol.short_side, protocol.long_side_max)
    spec = protocol.pamr

    def score_fn(crops: Tensor) -> Tensor:  # (N, 3, win, win) -> (N, C, win, win)
        scores = segment(crops).float()
        if spec is not None and spec.at == "output":  # TCL: at the model's output grid, then upsampled
            size = (
                max(1, crops.shape[-2] // spec.output_stride),
                max(1, crops.shape[-1] // spec.output_stride),
            )
            small = F.interpolate(crops, size=size, mode="bilinear", align_corners=True)
            if scores.shape[-2:] != size:
                scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
            scores = pamr(small, scores, spec.iterations, spec.dilations)
        if scores.shape[-2:] != crops.shape[-2:]:
            scores = F.interpolate(scores, size=crops.shape[-2:], mode="bilinear", align_corners=False)
        if spec is not None and spec.at == "window":
            scores = pamr(crops, scores, spec.iterations, spec.dilations)
        return scores

    if protocol.slide:
        scores = slide_inference(score_fn, x, protocol.window, protocol.stride)
    else:
        scores = _whole(score_fn, x)
    if scores.shape[-2:] != (h, w):
        scores = F.interpolate(scores.float(), size=(h, w), mode="bilinear", align_corners=False)
    if spec is not None and spec.at == "image":  # NACLIP: on the stitched scores at the native size
        scores = pamr(images, scores, spec.iterations, spec.dilations)
    if protocol.background == "words":
        scores = words_to_foreground(scores, len(protocol.background_words))
    return scores


def same_size_groups(batch: dict[str, Any]) -> Iterator[tuple[Tensor, Tensor, list[str]]]:
    """(images (B,3,H,W) uint8, masks (B,H,W), mask names) per image size of a collated batch."""
    images, masks, names = batch.get("image"), batch.get("mask"), list(batch.get("mask_name", []))
    if images is None or len(names) == 0:
        return
    if isinstance(images, Tensor):
        yield images, masks, names
        return
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(im.shape), []).append(i)
    for idx in groups.values():
        yield (
            torch.stack([images[i] for i in idx]),
            torch.stack([masks[i] for i in idx]),
            [names[i] for i in idx],
        )


def skip_reason(item: Any) -> str:
    """The reason string of a skipped item (a {"key", "skip"} dict or already a string)."""
    return str(item.get("skip", item)) if isinstance(item, dict) else str(item)


def save_predictions(labels: Tensor, mask_names: Sequence[str], out_dir: Path) -> None:
    """One uint8 label PNG per image, named like its ground-truth mask."""
    for lab, name in zip(labels.to(torch.uint8).cpu().numpy(), mask_names, strict=True):
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(lab)).save(path)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False, dynamic_ncols=True)


@torch.no_grad()
def update_with_batch(
    evaluator: SegmentationEvaluator,
    segment: Callable[[Tensor], Tensor],
    normalize: Callable[[Tensor], Tensor],
    batch: dict[str, Any],
    protocol: Protocol,
    score_budget: float = 1e8,
    on_scores: Callable[[Tensor, Tensor, list[str]], None] | None = None,
) -> int:
    """Scores one `collate_eval` batch under `protocol` and adds it to `evaluator`; returns the number of
    images scored. `on_scores(scores, masks, mask_names)` sees each scored chunk (to save predictions)."""
    n = 0
    for images, masks, names in same_size_groups(batch):
        # at most `score_budget` score values at native size per step (171 classes x 640 x 480 = 53M)
        step = max(1, int(score_budget) // (evaluator.num_fg * images.shape[-2] * images.shape[-1]))
        for s in range(0, len(names), step):
            sl = slice(s, s + step)
            scores = dense_scores(segment, normalize(images[sl]), protocol)  # (b, C_fg, H, W)
            target = masks[sl].to(scores.device)
            evaluator.update(scores, target)
            if on_scores is not None:
                on_scores(scores, target, names[sl])
            n += len(names[sl])
    return n


@torch.no_grad()
def evaluate_dataset(
    segment: Callable[[Tensor], Tensor],
    dataset: Any,
    protocol: Protocol,
    normalize: Normalizer,
    collate: Callable[[list[dict]], dict],
    batch_size: int = 64,
    num_workers: int = 0,
    save_pred: str | Path | None = None,
    progress: bool = True,
    score_budget: float = 1e8,
) -> dict[str, Any]:
    """Metrics of `segment` (normalised images -> (B, C_fg, h, w) scores of the classes already set, e.g.
    `Segmenter.class_scores`) on `dataset`: the evaluator's compute() dict plus
    `skipped` (count), `skipped_items` (reasons), `seconds` and `ms_per_image`."""
    evaluator = SegmentationEvaluator(
        dataset.classes,
        dataset.has_background,
        protocol.threshold or 0.5,
        ignore_index=dataset.ignore_index,
        clamp=protocol.background == "clamp",
    ).to(normalize.device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    out_dir = Path(save_pred) / dataset.name if save_pred else None
    skipped: list[str] = []
    start = time.perf_counter()
    bar = _progress(len(dataset), protocol.dataset, progress)
    save = None
    if out_dir is not None:
        save = lambda scores, _masks, names: save_predictions(
            evaluator.predict(scores.float()), names, out_dir
        )
    try:
        for batch in loader:
            skipped.extend(skip_reason(item) for item in batch.get("skipped", []))
            n = update_with_batch(evaluator, segment, normalize, batch, protocol, score_budget, save)
            bar.update(n + len(batch.get("skipped", [])))
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    results = evaluator.compute() if evaluator.diagnostics.den.sum() > 0 else _empty(dataset.classes)
    n = int(results["n_images"])
    results.update(
        skipped=len(skipped),
        skipped_items=skipped,
        seconds=seconds,
        ms_per_image=1000 * seconds / max(n, 1),
        threshold=protocol.threshold,
    )
    return results


def _empty(classes: Sequence[str]) -> dict[str, Any]:
    """Results of a dataset whose every image was skipped."""
    nan = float("nan")
    return {"mIoU": nan, "per_class_iou": {c: nan for c in classes}, "n_images": 0}
