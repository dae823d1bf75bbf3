"""Builders for open_clip CLIP models: the stand-in CLIP of the toy world and any open_clip backbone."""

from __future__ import annotations

import torch

from synseg.models.clip_configs import STANDIN_CLIP, register_clip_configs
from synseg.models.registry import register_model


def build_open_clip(model_name: str, pretrained: str | None = None) -> torch.nn.Module:
    """An open_clip CLIP model; `pretrained` is an open_clip tag ("openai") or a local checkpoint path."""
    import open_clip

    register_clip_configs()
    return open_clip.create_model(model_name, pretrained=pretrained or None)


@register_model
def toyclip(model_name: str = STANDIN_CLIP, pretrained: str | None = None) -> torch.nn.Module:
    """The stand-in CLIP: a small ViT (patch 8) and text transformer, trained on the toy world."""
    return build_open_clip(model_name, pretrained)
