"""Models: the frozen CLIP, the heads, and `Segmenter`, the inference model every consumer loads
(no Lightning,
no Hydra)."""

from synseg.models.segmenter import Segmenter, SegmenterLoadError

__all__ = ["Segmenter", "SegmenterLoadError"]
