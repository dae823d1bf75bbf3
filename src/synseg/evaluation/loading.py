"""`load_segmenter`: a segmentation module from a SynSeg checkpoint or a training-free model config.

Checkpoints of `FrozenBackboneSegmenter` modules carry a `synseg_meta` entry naming the module class and the
training image size; their frozen backbone is rebuilt from the backbone config (it is not stored). A
training-free model (`maskclip`) is built from its Hydra model config in the project's `configs/`."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch

from synseg.checkpoint_files import load_checkpoint_file
from synseg.errors import CheckpointError, UserError

CONFIG_DIR = Path(os.environ.get("SYNSEG_CONFIG_DIR", Path(__file__).resolve().parents[3] / "configs"))
PROJECT_ROOT = CONFIG_DIR.parent
META_KEY = "synseg_meta"  # same as synseg.lit.segmenter_base.META_KEY (not imported: keeps Lightning lazy)


class LoadError(UserError):
    """A checkpoint or model that cannot be loaded; the message is one line meant for the user."""


def read_meta(ckpt: str | Path) -> dict[str, Any]:
    """The `synseg_meta` entry of a checkpoint (module, image_size, threshold); LoadError otherwise."""
    path = Path(ckpt)
    if not path.is_file():
        raise LoadError(f"CKPT={path}: no such file (expected logs/train/<run>/checkpoints/last.ckpt)")
    try:
        state = load_checkpoint_file(path)  # weights-only: a file that needs arbitrary objects is refused
    except CheckpointError as err:
        raise LoadError(str(err)) from None
    if not isinstance(state, dict) or META_KEY not in state or "hyper_parameters" not in state:
        raise LoadError(
            f"CKPT={path}: not a SynSeg checkpoint (no '{META_KEY}' entry; it is written by "
            "FrozenBackboneSegmenter training runs, retrain with `make train`)"
        )
    meta = dict(state[META_KEY])
    meta["hyper_parameters"] = state["hyper_parameters"]
    return meta


def _resolve_path(value: str | None) -> str | None:
    """A relative local weight path as written at training time (relative to the project root)."""
    if not value or not Path(value).suffix or Path(value).is_absolute() or Path(value).exists():
        return value
    candidate = PROJECT_ROOT / value
    return str(candidate) if candidate.exists() else value


def _check_backbone_weights(backbone: dict[str, Any], source: str) -> None:
    pretrained = backbone.get("pretrained")
    if pretrained and Path(pretrained).suffix and not Path(pretrained).is_file():
        raise LoadError(
            f"{source}: backbone weights {pretrained} do not exist "
            "(build the stand-in CLIP with `make toyclip`)"
        )


def _import(qualname: str) -> type:
    module, _, name = qualname.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise LoadError(f"checkpoint module {qualname!r} cannot be imported ({err})") from err


def pick_device(name: str) -> torch.device:
    """`auto` (CUDA when available, else CPU) or a named device; a clear error when CUDA is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise LoadError(f"device={name}: CUDA is not available here; use device=cpu")
    return torch.device(name)


def load_checkpoint(ckpt: str | Path, device: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """(module in eval mode on `device`, synseg_meta) from a Lightning checkpoint."""
    meta = read_meta(ckpt)
    cls = _import(str(meta.get("module", "")))
    backbone = dict(meta["hyper_parameters"].get("backbone", {}))
    backbone["pretrained"] = _resolve_path(backbone.get("pretrained"))
    _check_backbone_weights(backbone, f"CKPT={ckpt}")
    # Only the backbone path is overridden (relative paths from training); everything else is as trained.
    # A dense-pretrained head is not re-read from its init file (a relative path, possibly absent on this
    # machine): the checkpoint's state dict holds the trained head anyway.
    has_decoder_init = "decoder_init" in meta["hyper_parameters"]
    init = {"decoder_init": "random", "decoder_ckpt": None} if has_decoder_init else {}
    try:
        module = cls.load_from_checkpoint(
            str(ckpt), map_location=torch.device(device), weights_only=True, backbone=backbone, **init
        )
    except RuntimeError as err:  # e.g. a state dict of another head size: say so in one line
        first = str(err).strip().splitlines()[0]
        raise LoadError(f"CKPT={ckpt}: its weights do not fit the model it names ({first})") from None
    meta.pop("hyper_parameters")
    return module.to(device).eval(), meta


def model_config(model: str, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The composed `model` node of configs/train.yaml with `model=<name>` (paths rooted at the project)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    names = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml") if not p.stem.startswith("_"))
    if model not in names:
        raise LoadError(f"MODEL={model}: unknown model; known: {' '.join(names)}")
    over = [f"model={model}", *overrides]
    if not any(o.startswith("paths.root_dir=") for o in overrides):
        over.insert(1, f"paths.root_dir={PROJECT_ROOT}")
    if GlobalHydra.instance().is_initialized():  # inside a @hydra.main app (same config dir)
        return compose(config_name="train", overrides=over).model
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=over).model


def build_model(
    model: Any, device: str | torch.device = "cpu", overrides: list[str] | tuple[str, ...] = ()
) -> tuple[Any, dict[str, Any]]:
    """(training-free module in eval mode, meta with its backbone's input size) from a model config name
    (composed with `overrides`) or an already composed model config node."""
    import hydra
    from omegaconf import OmegaConf

    from synseg.models.clip_configs import preprocess_cfg

    cfg = model_config(model, overrides) if isinstance(model, str) else model
    name = model if isinstance(model, str) else cfg.get("name", "model")
    cls = _import(str(cfg._target_))
    if getattr(cls, "requires_training", True):
        raise LoadError(
            f"MODEL={name}: needs training; evaluate a trained run with CKPT=logs/train/<run>/checkpoints/"
            "last.ckpt (MODEL alone is for training-free models such as maskclip)"
        )
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone["pretrained"] = _resolve_path(backbone.get("pretrained"))
    _check_backbone_weights(backbone, f"MODEL={name}")
    module = hydra.utils.instantiate(cfg, backbone=backbone).to(device).eval()
    size = preprocess_cfg(backbone["model_name"], backbone.get("pretrained"))["size"][0]
    return module, {
        "module": f"{cls.__module__}.{cls.__qualname__}",
        "image_size": int(size),
        "threshold": None,
    }


def load_segmenter(
    ckpt: str | None,
    model: Any = None,
    device: str | torch.device = "cpu",
    overrides: list[str] | tuple[str, ...] = (),
) -> Any:
    """A module with `set_classes(names)` and `segment(images)`, its meta in `module.synseg_meta`.

    Exactly one of `ckpt` (a SynSeg Lightning checkpoint) and `model` (a training-free model config name,
    with optional Hydra `overrides` such as `model.backbone.pretrained=null`, or a composed model config)
    must be given."""
    if bool(ckpt) == bool(model):
        shown = model if model is None or isinstance(model, str) else model.get("name")
        raise LoadError(
            "give exactly one of CKPT=logs/train/<run>/checkpoints/last.ckpt and MODEL=<training-free model, "
            f"e.g. maskclip> (got CKPT={ckpt!r}, MODEL={shown!r})"
        )
    module, meta = load_checkpoint(ckpt, device) if ckpt else build_model(model, device, overrides)
    module.synseg_meta = meta
    return module


def preprocess_for(module: Any) -> dict[str, Any]:
    """The backbone's preprocessing config (mean, std, size) of a loaded module."""
    from synseg.models.clip_configs import preprocess_cfg

    hparams = getattr(module, "hparams", {}) or {}
    pretrained = dict(hparams.get("backbone", {}) or {}).get("pretrained")
    return preprocess_cfg(module.backbone.model_name, pretrained)


def set_templates(module: Any, templates: tuple[str, ...] | list[str]) -> None:
    """Makes `module.set_classes` embed class names with `templates` (the protocol's set)."""
    hparams = getattr(module, "hparams", None)
    if hparams is None or "templates" not in hparams:
        raise LoadError(f"{type(module).__name__}: has no `templates` hyper-parameter to set the protocol's")
    hparams.templates = list(templates)
