"""Zero-shot segmentation benchmarks as datasets of full-resolution (image, mask) pairs.

`build_eval_dataset(name, DATA_ROOT)` finds a benchmark in its usual mmseg layout (see `layouts`),
remaps its mask values for the variant (with or without background) and checks every mask against its image,
so the evaluation runner only resizes, predicts and counts. Label 255 is "ignore" everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from synseg.data.benchmarks.layouts import (
    BENCHMARKS,
    BenchmarkSpec,
    Sample,
    benchmark_classes,
    benchmark_spec,
    find_samples,
)
from synseg.errors import DataFileError

__all__ = [
    "BENCHMARKS",
    "BenchmarkSpec",
    "EvalDataset",
    "Sample",
    "benchmark_classes",
    "benchmark_names",
    "benchmark_spec",
    "build_eval_dataset",
    "collate_eval",
]

IGNORE_INDEX = 255
# What PIL raises for files it cannot read (UnidentifiedImageError is an OSError; some plugins raise
# SyntaxError or ValueError on corrupt headers; DecompressionBombError on absurd sizes).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_LABEL_MODES = ("P", "L", "1", "I", "I;16", "I;16B", "I;16L")


def benchmark_names() -> list[str]:
    """Registered benchmark names, in the protocol's order."""
    return list(BENCHMARKS)


class _DecodeError(Exception):
    """A file that will not decode; becomes a `skip` entry instead of stopping the evaluation."""


def _decode(path: Path, rgb: bool) -> tuple[np.ndarray, str]:
    try:
        with Image.open(path) as im:
            mode = im.mode
            array = np.asarray(im.convert("RGB") if rgb else im)
    except _DECODE_ERRORS as err:
        raise _DecodeError(f"{path}: cannot decode ({type(err).__name__}: {err})") from err
    return array, mode


class EvalDataset(Dataset):
    """Full-resolution (image, mask) pairs of one benchmark, masks already remapped to 0..C-1 / 255.

    `classes[i]` names label i; with a background, `classes[0] == "background"`. Items are dicts: `image`
    uint8 (3, H, W) RGB, `mask` int64 (H, W), `key`, `mask_name` (the ground truth's file name, to save a
    prediction under), `image_path`, `mask_path`; or `{"key", "skip"}` for a file that will not decode."""

    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        name: str,
        root: str | Path,
        classes: list[str],
        samples: list[Sample],
        has_background: bool,
        reduce_zero_label: bool = False,
        labels: str = "",
    ) -> None:
        self.name, self.root = name, Path(root)
        self.classes, self.has_background = list(classes), has_background
        self.samples, self.reduce_zero_label, self.labels = list(samples), reduce_zero_label, labels
        n_file = len(self.classes) + (
            1 if reduce_zero_label else 0
        )  # distinct non-ignore values in the files
        if n_file > IGNORE_INDEX:
            raise DataFileError(f"{name}: {len(self.classes)} classes; expected at most 255 (255 is ignore)")
        self._file_values = n_file
        # file value -> label (int64), -1 for values that are not allowed
        lut = np.full(256, -1, dtype=np.int64)
        lut[:n_file] = np.arange(n_file) - (1 if reduce_zero_label else 0)
        if reduce_zero_label:
            lut[0] = IGNORE_INDEX
        lut[IGNORE_INDEX] = IGNORE_INDEX
        self._lut = lut

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        bg = "with" if self.has_background else "no"
        return f"EvalDataset({self.name}: {len(self)} images, {len(self.classes)} classes, {bg} background)"

    def _remap(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """File values -> labels; values outside 0..n-1 and 255 are an error naming the file."""
        if mask.dtype == bool:
            mask = mask.astype(np.uint8)
        big = int(mask.max(initial=0)) > IGNORE_INDEX or int(mask.min(initial=0)) < 0
        present = np.unique(mask) if big else np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
        bad = [int(v) for v in present if not 0 <= v <= IGNORE_INDEX or self._lut[v] < 0]
        if bad:
            zero = " (0 = background/other, ignored)" if self.reduce_zero_label else ""
            raise DataFileError(
                f"{path}: label value(s) {bad[:8]} outside 0..{self._file_values - 1}{zero} and not 255 "
                f"(ignore); expected {self.name} labels: {self.labels or f'{len(self.classes)} classes'}"
            )
        return self._lut[mask.astype(np.intp, copy=False)]

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.samples[i]
        try:
            image, _ = _decode(sample.image, rgb=True)
            mask, mode = _decode(sample.mask, rgb=False)
        except _DecodeError as err:
            return {"key": sample.key, "skip": str(err)}
        if mode not in _LABEL_MODES or mask.ndim != 2:
            raise DataFileError(
                f"{sample.mask}: mask has PIL mode {mode} (shape {mask.shape}); expected a single-channel "
                "label PNG (mode P: palette index = label, or L: grey value = label), not a colour rendering"
            )
        if mask.shape != image.shape[:2]:
            raise DataFileError(
                f"{sample.mask}: mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from its image "
                f"{sample.image.name} {image.shape[1]}x{image.shape[0]}; expected equal sizes"
            )
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),  # (3, H, W) uint8
            "mask": torch.from_numpy(self._remap(mask, sample.mask)),  # (H, W) int64
            "key": sample.key,
            "mask_name": sample.mask.name,
            "image_path": str(sample.image),
            "mask_path": str(sample.mask),
        }


def build_eval_dataset(name: str, root: str | Path) -> EvalDataset:
    """The benchmark `name` under DATA_ROOT `root` (for `folder`/`toy`, the folder itself).

    Raises FileNotFoundError with the expected layout and the missing files, ValueError for an unknown name or
    a bad classes.txt."""
    spec = benchmark_spec(name)
    root = Path(root).expanduser()
    samples = find_samples(spec, root)
    classes = benchmark_classes(name, root)
    has_background = spec.has_background if spec.packaged_classes else classes[0] == "background"
    return EvalDataset(name, root, classes, samples, has_background, spec.reduce_zero_label, spec.labels)


def collate_eval(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch EvalDataset items: images (B, 3, H, W) and masks (B, H, W) stacked when all share a size
    (`stacked=True`), else lists; `skip` entries go to `skipped` ({key, skip} dicts)."""
    skipped = [b for b in batch if "skip" in b]
    items = [b for b in batch if "skip" not in b]
    out: dict[str, Any] = {"skipped": skipped}
    for key in ("key", "mask_name", "image_path", "mask_path"):
        out[key] = [b[key] for b in items]
    images, masks = [b["image"] for b in items], [b["mask"] for b in items]
    stacked = bool(items) and len({tuple(im.shape) for im in images}) == 1
    out["image"] = torch.stack(images) if stacked else images
    out["mask"] = torch.stack(masks) if stacked else masks
    out["stacked"] = stacked
    return out
