"""`MaskClipModule`: the training-free models (`maskclip`, `naclip`) as a LightningModule, so that
`make train MODEL=maskclip|naclip` and `make compare` validate and test them like the trained ones.

The inference is `synseg.models.Segmenter` of that kind: per patch, the frozen dense token (MaskCLIP's value
path, or NACLIP's neighbour-aware last block; synseg.models.dense_attention) against each class prompt
embedding, a softmax over classes at CLIP's logit scale, upsampled bilinearly to the image."""

from __future__ import annotations

from typing import Any

from synseg.lit.segmenter_base import FrozenBackboneSegmenter


class MaskClipModule(FrozenBackboneSegmenter):
    """Evaluation only: the shared evaluator scores `self.segmenter`."""

    requires_training = False

    def __init__(self, segmenter: dict[str, Any]) -> None:
        super().__init__(segmenter)
