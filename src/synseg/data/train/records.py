"""Decoding raw image-caption records (bytes from a shard or a stream) robustly, with counted skips.

A record is a dict with a key, image bytes and caption bytes/str. Anything wrong with one sample is skipped
and counted by reason (`SKIP_REASONS`), never raised; images that decode only after a conversion are used
and counted by kind (`CONVERSIONS`), so nothing passes silently. Captions longer than
`DecodeOptions.max_caption_chars` are skipped (`caption_too_long`), not truncated: at web scale they are
mostly spam or concatenated alt texts, and CLIP's tokenizer would keep only their first 77 tokens."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synseg.errors import ConfigError, DataStreamError

log = logging.getLogger(__name__)
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
CAPTION_KEYS = ("txt", "caption", "text")
# Every reason a sample or a shard is skipped; DataStatsCallback logs all of them (zeros included).
SKIP_REASONS = (
    "image_missing",
    "image_undecodable",
    "image_too_small",
    "decompression_bomb",
    "caption_missing",
    "caption_not_utf8",
    "caption_empty",
    "caption_too_long",
    "sample_partial",  # the sample being read when its shard broke off
    "member_duplicate",  # a second KEY.ext member in one sample (the later one is dropped)
    "shard_broken",  # unreadable, truncated at any byte, or a failed pipe / download
    "shard_empty",  # a valid tar without any sample
)
# Images used after a conversion to 8-bit RGB (see `image_decode.decode_image`).
CONVERSIONS = ("16bit", "palette", "cmyk", "alpha", "greyscale", "other_mode", "exif_rotated")


@dataclass(frozen=True)
class DecodeOptions:
    """Limits of `decode_record` (config `data.decode`)."""

    min_image_size: int = 16  # shortest side in pixels; smaller images are skipped (image_too_small)
    max_image_pixels: int = 89_478_485  # PIL's default bomb limit; larger images: decompression_bomb
    max_caption_chars: int = 1000  # longer captions are skipped (caption_too_long)
    alpha_background: tuple[int, int, int] = (255, 255, 255)  # transparent pixels become this colour

    @classmethod
    def from_config(cls, cfg: dict | None) -> DecodeOptions:
        """From the `data.decode` dict; ConfigError names a bad key or value."""
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                f"data.decode.{unknown[0]}: unknown key; expected {', '.join(cls.__dataclass_fields__)}"
            )
        for key in ("min_image_size", "max_image_pixels", "max_caption_chars"):
            if key in cfg and (not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1):
                raise ConfigError(f"data.decode.{key}: expected an integer >= 1, got {cfg[key]!r}")
        if "alpha_background" in cfg:
            colour = list(cfg["alpha_background"] or [])
            if len(colour) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in colour):
                raise ConfigError(
                    f"data.decode.alpha_background: expected three integers in 0..255, got {colour!r}"
                )
            cfg["alpha_background"] = tuple(colour)
        return cls(**cfg)


@dataclass
class SkipCounter:
    """Counts skipped samples by reason and conversions by kind; logs the first few of each reason.

    With `limit`, `limit` consecutive skips without a usable sample in between (`used()`) raise
    DataStreamError naming `source`: a stream that decodes nothing stops instead of spinning forever.
    `muted` drops events while a resumed stream re-reads records whose events were already counted."""

    counts: Counter = field(default_factory=Counter)
    max_logged: int = 5
    limit: int | None = None
    source: str = "data stream"
    converted: Counter = field(default_factory=Counter)
    consecutive: int = 0
    muted: bool = False

    def skip(self, reason: str, key: str, detail: str = "") -> None:
        if self.muted:
            return
        self.counts[reason] += 1
        self.consecutive += 1
        if self.counts[reason] <= self.max_logged:
            log.warning("skipping sample %s: %s %s", key, reason, detail)
        if self.limit is not None and self.consecutive >= self.limit:
            raise DataStreamError(
                f"{self.source}: {self.consecutive} consecutive records or shards without a usable sample "
                f"(skipped so far: {self.summary()}); check the data or raise "
                "data.faults.max_consecutive_skips"
            )

    def convert(self, kind: str) -> None:
        if not self.muted:
            self.converted[kind] += 1

    def used(self) -> None:
        """A usable sample: resets the consecutive-skip count."""
        self.consecutive = 0

    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "nothing"


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


def decode_record(
    record: dict[str, Any], skips: SkipCounter, options: DecodeOptions | None = None
) -> tuple[np.ndarray, str] | None:
    """(RGB uint8 image (H, W, 3), caption) of a raw record, or None after counting why it was skipped."""
    from synseg.data.train.image_decode import decode_image

    options = options or DecodeOptions()
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
    if len(caption) > options.max_caption_chars:
        skips.skip("caption_too_long", key, f"({len(caption)} > {options.max_caption_chars} characters)")
        return None
    raw_image = _first(record, IMAGE_KEYS)
    if raw_image is None:
        skips.skip("image_missing", key)
        return None
    image = decode_image(raw_image, key, skips, options)
    if image is None:
        return None
    return image, caption
