"""Registers this package's open_clip model configs (the stand-in CLIP) with open_clip.

After `register_clip_configs()`, open_clip knows the stand-in's architecture by name, and
`toyclip.build_open_clip("toyclip-vit-p8c", PATH)` loads it exactly as `build_open_clip("ViT-B-16", "openai")`
loads the real backbone (the stand-in's conv stem, declared in `CONV_STEMS`, is added there)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).parent / "resources" / "open_clip"  # the stand-in CLIP's open_clip json
STANDIN_CLIP = "toyclip-vit-p8c"
# Models whose patch embedding is a `conv_stem.ConvStem` with these hidden channel counts (open_clip's json
# schema has no field for it, so it is declared here, by model name).
CONV_STEMS: dict[str, tuple[int, ...]] = {"toyclip-vit-p8c": (24, 48)}
_registered = False


def register_clip_configs() -> None:
    """Adds `models/configs/*.json` to open_clip's model registry (idempotent)."""
    global _registered
    if _registered:
        return
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    _registered = True


def preprocess_cfg(model_name: str, pretrained: str | None = None) -> dict[str, Any]:
    """The image preprocessing (size, mean, std, interpolation) open_clip would use for this backbone.

    Starts from open_clip's defaults, then the model config, then the pretrained tag's own values."""
    import open_clip
    from open_clip.transform import PreprocessCfg

    register_clip_configs()
    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        known = ", ".join(sorted(open_clip.list_models())[:8])
        raise ValueError(f"backbone: unknown open_clip model {model_name!r} (e.g. {known}, {STANDIN_CLIP})")
    cfg = asdict(PreprocessCfg())
    cfg.update(model_cfg.get("preprocess_cfg", {}))
    size = model_cfg["vision_cfg"].get("image_size", cfg["size"])
    cfg["size"] = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    if pretrained and not Path(pretrained).suffix:  # a tag such as "openai", not a checkpoint file
        tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
        for key in ("mean", "std", "interpolation", "resize_mode"):
            if key in tag_cfg:
                cfg[key] = tag_cfg[key]
    return cfg


def context_length(model_name: str) -> int:
    """Text context length of an open_clip model config."""
    import open_clip

    register_clip_configs()
    return int(open_clip.get_model_config(model_name)["text_cfg"].get("context_length", 77))
