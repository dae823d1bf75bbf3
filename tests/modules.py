"""Modules built as runs build them: from the real configs (configs/model/<name>.yaml) with overrides, on a
random stand-in backbone (no cached weights needed)."""

from __future__ import annotations

from typing import Any

import torch
from hydra import compose, initialize_config_dir

from tests.conftest import ROOT

RANDOM = ["clip.pretrained=null", "paths.root_dir=/nonexistent"]


def model_config(model: str, *overrides: str) -> Any:
    """The composed `model` node of configs/train.yaml for `model` (random backbone, plus overrides)."""
    extra = ["model.decoder_init=random"] if model == "synseg" else []
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[f"model={model}", *RANDOM, *extra, *overrides]).model


def build_module(model: str, *overrides: str, seed: int = 0) -> Any:
    """The LightningModule of `model` as `python -m synseg.train model=<model> <overrides>` builds it."""
    import hydra

    torch.manual_seed(seed)
    return hydra.utils.instantiate(model_config(model, *overrides))
