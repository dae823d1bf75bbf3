"""One image decoder for every training source: encoded bytes -> RGB uint8 (H, W, 3), or a counted skip.

Handled and counted (`records.CONVERSIONS`): 16-bit and 32-bit greyscale (I;16*, I, F: scaled from the
16-bit range to 8 bit, not clipped to white), palette images (P; with a transparency entry they are
composited like RGBA), CMYK, images with alpha (RGBA, LA, PA, RGBa: composited over
`DecodeOptions.alpha_background`, white by default, because web images with transparency are drawn for a
light page and their hidden pixels are often black garbage), greyscale (L, 1), other modes (YCbCr, LAB,
HSV) and EXIF orientation (`ImageOps.exif_transpose`). Skipped: images smaller than `min_image_size`,
decompression bombs (more than `max_image_pixels` pixels, or refused by PIL's own `MAX_IMAGE_PIXELS`
warning / error), and anything PIL cannot decode."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from synseg.data.train.records import DecodeOptions, SkipCounter

_EXIF_ORIENTATION = 0x0112
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_GREY_MODES = ("L", "1")


def _open(raw: Any) -> Image.Image:
    if isinstance(raw, Image.Image):
        return raw
    if isinstance(raw, dict):  # datasets' {"bytes": ..., "path": ...}
        raw = raw.get("bytes")
    return Image.open(io.BytesIO(raw))


def _high_bit_to_rgb(im: Image.Image) -> np.ndarray:
    # (H, W) 16-bit (or 32-bit holding 16-bit values) -> 8 bit by /257, so 65535 -> 255 and 32768 -> 128.
    arr = np.asarray(im, dtype=np.float64)
    grey = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _composite(im: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    rgba = im.convert("RGBA")
    base = Image.new("RGBA", rgba.size, (*background, 255))
    return np.asarray(Image.alpha_composite(base, rgba).convert("RGB"))


def _to_rgb(im: Image.Image, options: DecodeOptions) -> tuple[np.ndarray, str | None]:
    """(H, W, 3) uint8 array and the conversion kind (None for plain RGB)."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im), None
    if mode in _HIGH_BIT_MODES:
        return _high_bit_to_rgb(im), "16bit"
    if mode == "P":
        if "transparency" in im.info:
            return _composite(im, options.alpha_background), "palette"
        return np.asarray(im.convert("RGB")), "palette"
    if mode == "CMYK":
        return np.asarray(im.convert("RGB")), "cmyk"
    if mode in _ALPHA_MODES:
        return _composite(im, options.alpha_background), "alpha"
    if mode in _GREY_MODES:
        return np.asarray(im.convert("RGB")), "greyscale"
    return np.asarray(im.convert("RGB")), "other_mode"


def decode_image(raw: Any, key: str, skips: SkipCounter, options: DecodeOptions) -> np.ndarray | None:
    """RGB uint8 (H, W, 3) from encoded bytes, a {"bytes": ...} dict, a PIL image or an array; None after
    counting the reason when the image cannot be used."""
    if isinstance(raw, np.ndarray):  # already decoded (the toy world): trusted as RGB uint8
        return raw
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = _open(raw)  # reads the header only
            width, height = im.size
            if width * height > options.max_image_pixels:
                skips.skip("decompression_bomb", key, f"({width}x{height} pixels)")
                return None
            if min(width, height) < options.min_image_size:
                skips.skip("image_too_small", key, f"({width}x{height} < {options.min_image_size} px)")
                return None
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        skips.skip("decompression_bomb", key, f"({err})")
        return None
    except Exception as err:  # PIL raises many types for broken files
        skips.skip("image_undecodable", key, f"({type(err).__name__})")
        return None
    try:
        rotated = im.getexif().get(_EXIF_ORIENTATION, 1) in range(2, 9)
        if rotated:
            im = ImageOps.exif_transpose(im)
        image, kind = _to_rgb(im, options)
    except Exception as err:  # a corrupt EXIF block or a mode PIL cannot convert
        skips.skip("image_undecodable", key, f"({type(err).__name__} while converting {im.mode})")
        return None
    if kind is not None:
        skips.convert(kind)
    if rotated:
        skips.convert("exif_rotated")
    return np.ascontiguousarray(image)
