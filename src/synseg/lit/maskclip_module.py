"""`MaskClipModule`: training-free dense zero-shot segmentation from the frozen CLIP (MaskCLIP-style).

Per patch, the frozen dense token (MaskCLIP's value path) is compared with each class prompt embedding;
scores are a softmax over classes at CLIP's logit scale, upsampled bilinearly to the image. No training."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from synseg.lit.segmenter_base import FrozenBackboneSegmenter


class MaskClipModule(FrozenBackboneSegmenter):
    """Evaluation only: the shared evaluator calls `segment`."""

    requires_training = False

    def __init__(
        self,
        backbone: dict,
        templates: tuple[str, ...] = ("a photo of a {}.",),
        name: str = "maskclip",
        temperature: float | None = None,
        **_: object,
    ) -> None:
        super().__init__(backbone, None, None, 0, templates, name)
        self.head.requires_grad_(False)  # unused: a training-free method

    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) class probabilities from patch-text cosine similarities."""
        feats = self.backbone.encode_images(images)
        dense = F.normalize(feats["dense"], dim=-1)  # (B, N, D)
        scale = self.hparams.temperature or float(self.backbone.clip.logit_scale.exp())
        logits = scale * dense @ self.class_text.T  # (B, N, C)
        b, n, c = logits.shape
        grid = feats["grid"]
        probs = logits.softmax(-1).transpose(1, 2).reshape(b, c, *grid)
        return F.interpolate(probs, size=images.shape[-2:], mode="bilinear", align_corners=False)
