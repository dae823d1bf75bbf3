"""Image preprocessing from the backbone's preprocessing config (size, mean, std, interpolation)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

_PIL_INTERP = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


class ImageTransform:
    """uint8 RGB arrays (H, W, 3) -> a normalised float batch (B, 3, S, S).

    Images already at the target size skip PIL (the toy world's fast path); others are resized on their
    shortest side and centre-cropped, as open_clip's eval transform does."""

    def __init__(
        self,
        size: int | Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: str = "bicubic",
    ) -> None:
        self.size = int(size if isinstance(size, int) else size[0])
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.interpolation = _PIL_INTERP[interpolation]

    def resize_crop(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        s = self.size
        if h == s and w == s:
            return image
        scale = s / min(h, w)
        nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
        im = Image.fromarray(image).resize((nw, nh), self.interpolation)
        top, left = (nh - s) // 2, (nw - s) // 2
        return np.asarray(im.crop((left, top, left + s, top + s)))

    def __call__(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        batch = np.stack([self.resize_crop(im) for im in images])  # (B, S, S, 3) uint8
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self.mean) / self.std


def normalize_for(cfg: dict) -> ImageTransform:
    """An ImageTransform from an open_clip preprocess config dict (see `clip_configs.preprocess_cfg`)."""
    return ImageTransform(cfg["size"], cfg["mean"], cfg["std"], cfg.get("interpolation", "bicubic"))
