"""`MaskClipModule`: training-free dense zero-shot segmentation from the frozen CLIP (MaskCLIP-style).

The inference is `synseg.models.Segmenter` of kind `maskclip`: per patch, the frozen dense token (MaskCLIP's
value path) against each class prompt embedding, a softmax over classes at CLIP's logit scale, upsampled
bilinearly to the image. This module only lets `make train MODEL=maskclip` validate and test it."""

from __future__ import annotations

from typing import Any

from synseg.lit.segmenter_base import FrozenBackboneSegmenter


class MaskClipModule(FrozenBackboneSegmenter):
    """Evaluation only: the shared evaluator scores `self.segmenter`."""

    requires_training = False

    def __init__(self, segmenter: dict[str, Any]) -> None:
        super().__init__(segmenter)
