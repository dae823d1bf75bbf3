"""Segmentation datasets in the `folder` layout: root/{images/*.png|jpg, masks/*.png, classes.txt}.

The toy world's val/test splits are written in this layout, so they are evaluated by the same code that
evaluates a user's own folder. Label 255 is "ignore"; `classes.txt` line i names label i."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from synseg.data.transforms import ImageTransform
from synseg.errors import DataFileError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LAYOUT = "root/images/<stem>.png|jpg, root/masks/<stem>.png (uint8 labels, 255 = ignore), root/classes.txt"


def read_classes(path: Path) -> list[str]:
    """Class names of a `classes.txt`, one per line; duplicate or empty names are an error naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; expected layout {LAYOUT}")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while names and not names[-1]:
        names.pop()
    empty = [i + 1 for i, n in enumerate(names) if not n]
    if empty:
        raise DataFileError(f"{path}: empty class name on line(s) {empty}; expected one name per line")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataFileError(f"{path}: duplicate class names {dupes}; expected each name once")
    return names


class SegFolderDataset(Dataset):
    """(image, mask) pairs of a `folder`-layout root; images go through `transform`, masks stay full size."""

    def __init__(self, root: str | Path, transform: ImageTransform) -> None:
        self.root = Path(root)
        self.classes = read_classes(self.root / "classes.txt")
        self.has_background = self.classes[0] == "background"
        images = sorted(p for p in (self.root / "images").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FileNotFoundError(f"{self.root / 'images'}: no images; expected layout {LAYOUT}")
        missing = [p.stem for p in images if not (self.root / "masks" / f"{p.stem}.png").is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.root / 'masks'}: {len(missing)} mask(s) missing, e.g. "
                f"{missing[0]}.png; expected one mask per image with the same stem"
            )
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.images[i]
        mask_path = self.root / "masks" / f"{path.stem}.png"
        image = np.asarray(Image.open(path).convert("RGB"))
        mask = np.asarray(Image.open(mask_path))
        if mask.shape != image.shape[:2]:
            raise DataFileError(
                f"{mask_path}: mask size {mask.shape[::-1]} differs from its image "
                f"{image.shape[1::-1]}; expected equal (width, height)"
            )
        bad = (mask >= len(self.classes)) & (mask != 255)
        if bad.any():
            raise DataFileError(
                f"{mask_path}: label {int(mask[bad].max())} outside 0..{len(self.classes) - 1} "
                "(classes.txt) and not 255 (ignore)"
            )
        return {
            "image": self.transform([image])[0],
            "mask": torch.from_numpy(mask.astype(np.int64)),
            "key": path.stem,
        }
