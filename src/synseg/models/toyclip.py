"""Builders for open_clip CLIP models: the stand-in CLIP of the toy world and any open_clip backbone."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from synseg.clip_configs import CONV_STEMS, STANDIN_CLIP, register_clip_configs
from synseg.models.conv_stem import ConvStem
from synseg.models.registry import register_model


def build_open_clip(model_name: str, pretrained: str | None = None) -> torch.nn.Module:
    """An open_clip CLIP model; `pretrained` is an open_clip tag ("openai") or a local checkpoint path."""
    import open_clip

    register_clip_configs()
    stem = CONV_STEMS.get(model_name)
    if stem is None:
        return open_clip.create_model(model_name, pretrained=pretrained or None)
    if pretrained and not Path(pretrained).is_file():
        raise FileNotFoundError(
            f"pretrained={pretrained!r}: {model_name} has a conv stem, so its weights come from a local "
            f"checkpoint file (build it with `make toyclip`), not an open_clip tag"
        )
    # A conv-stem model: build, swap the patch embedding, then load (open_clip would load before the swap).
    with _quiet_random_init_warning(bool(pretrained)):
        model = open_clip.create_model(model_name, pretrained=None)
    visual = model.visual
    visual.conv1 = ConvStem(visual.transformer.width, visual.patch_size[0], stem)
    if pretrained:
        open_clip.load_checkpoint(model, pretrained)
    return model


@contextmanager
def _quiet_random_init_warning(active: bool) -> Iterator[None]:
    """Drops open_clip's "No pretrained weights loaded" warning while we load the weights ourselves."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")

    root = logging.getLogger()
    if active:
        root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


@register_model
def toyclip(model_name: str = STANDIN_CLIP, pretrained: str | None = None) -> torch.nn.Module:
    """The stand-in CLIP: a small ViT (patch 8) and text transformer, trained on the toy world."""
    return build_open_clip(model_name, pretrained)
