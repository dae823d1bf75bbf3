"""The one way evaluation tools get a model: `load_model` returns a `synseg.models.Segmenter`, from a run's
checkpoint or an exported file (`Segmenter.load`), or a training-free one built on a backbone
(`Segmenter.training_free`). No Lightning, no Hydra, no training config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from synseg.errors import UserError
from synseg.models.segmenter import TRAINING_FREE, Segmenter, SegmenterLoadError

CONFIG_DIR = Path(os.environ.get("SYNSEG_CONFIG_DIR", Path(__file__).resolve().parents[3] / "configs"))


class LoadError(UserError):
    """A checkpoint or model that cannot be loaded; the message is one line meant for the user."""


def pick_device(name: str) -> torch.device:
    """`auto` (CUDA when available, else CPU) or a named device; a clear error when CUDA is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise LoadError(f"device={name}: CUDA is not available here; use device=cpu")
    return torch.device(name)


def load_model(
    ckpt: str | None,
    model: str | None,
    clip: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> Segmenter:
    """Exactly one of `ckpt` (a run's last.ckpt / best.ckpt or an exported model file) and `model` (a
    training-free model name, built on the `clip` backbone config: model_name, pretrained, image_size)."""
    if bool(ckpt) == bool(model):
        raise LoadError(
            "give exactly one of CKPT=logs/train/<run>/checkpoints/last.ckpt (or an exported model file) and "
            f"MODEL=<training-free model: {' '.join(TRAINING_FREE)}> (got CKPT={ckpt!r}, MODEL={model!r})"
        )
    try:
        if ckpt:
            return Segmenter.load(ckpt, device).eval()
        if model not in TRAINING_FREE:
            raise LoadError(
                f"MODEL={model}: not a training-free model (known: {' '.join(TRAINING_FREE)}); evaluate a "
                "trained run with CKPT=logs/train/<run>/checkpoints/last.ckpt"
            )
        return Segmenter.training_free(str(model), dict(clip or {})).to(device).eval()
    except (SegmenterLoadError, FileNotFoundError) as err:
        message = str(err)
        if ckpt and message.startswith(f"{ckpt}: "):
            message = message[len(f"{ckpt}: ") :]
        raise LoadError(
            message if not ckpt or message.startswith("CKPT=") else f"CKPT={ckpt}: {message}"
        ) from None


def clip_config(name: str, data_dir: str | Path | None = None) -> dict[str, Any]:
    """configs/clip/<name>.yaml as a plain dict, `${paths.data_dir}` resolved (default: the project's
    data/)."""
    from omegaconf import OmegaConf

    path = CONFIG_DIR / "clip" / f"{name}.yaml"
    if not path.is_file():
        known = " ".join(sorted(p.stem for p in (CONFIG_DIR / "clip").glob("*.yaml")))
        raise LoadError(f"--clip {name}: unknown backbone config; known: {known}")
    paths = {"data_dir": str(data_dir or CONFIG_DIR.parent / "data")}
    merged = OmegaConf.merge({"paths": paths}, {"clip": OmegaConf.load(path)})
    return dict(OmegaConf.to_container(merged.clip, resolve=True))
