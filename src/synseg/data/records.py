"""Decoding raw image-caption records (bytes from a shard or a stream) robustly, with counted skips.

A record is a dict with a key, image bytes and caption bytes/str. Anything wrong with one sample (image that
will not decode, missing / empty / non-UTF-8 caption) is skipped and counted by reason, never raised."""

from __future__ import annotations

import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
CAPTION_KEYS = ("txt", "caption", "text")
SKIP_REASONS = ("image_missing", "image_undecodable", "caption_missing", "caption_not_utf8", "caption_empty")


@dataclass
class SkipCounter:
    """Counts skipped samples by reason; logs the first few of each reason with the sample key."""

    counts: Counter = field(default_factory=Counter)
    max_logged: int = 5

    def skip(self, reason: str, key: str, detail: str = "") -> None:
        self.counts[reason] += 1
        if self.counts[reason] <= self.max_logged:
            log.warning("skipping sample %s: %s %s", key, reason, detail)

    def total(self) -> int:
        return sum(self.counts.values())


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if record.get(k) is not None:
            return record[k]
    return None


def decode_caption(raw: Any) -> str | None:
    """A caption as str from bytes or str; None when it is not UTF-8 (raises nothing)."""
    if isinstance(raw, str):
        return raw
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode_image(raw: Any) -> np.ndarray:
    """RGB uint8 array (H, W, 3) from encoded bytes, a {"bytes": ...} dict, a PIL image or an array."""
    if isinstance(raw, np.ndarray):
        return raw
    if isinstance(raw, Image.Image):
        return np.asarray(raw.convert("RGB"))
    if isinstance(raw, dict):
        raw = raw.get("bytes")
    with Image.open(io.BytesIO(raw)) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def decode_record(record: dict[str, Any], skips: SkipCounter) -> tuple[np.ndarray, str] | None:
    """(image, caption) of a raw record, or None after counting why it was skipped."""
    key = str(record.get("__key__", record.get("key", "?")))
    raw_caption = _first(record, CAPTION_KEYS)
    if raw_caption is None:
        skips.skip("caption_missing", key)
        return None
    caption = decode_caption(raw_caption)
    if caption is None:
        skips.skip("caption_not_utf8", key)
        return None
    caption = caption.strip()
    if not caption:
        skips.skip("caption_empty", key)
        return None
    raw_image = _first(record, IMAGE_KEYS)
    if raw_image is None:
        skips.skip("image_missing", key)
        return None
    try:
        image = decode_image(raw_image)
    except Exception as err:  # PIL raises many types for broken files
        skips.skip("image_undecodable", key, f"({type(err).__name__})")
        return None
    return image, caption
