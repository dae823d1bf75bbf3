"""A tiny SynSeg checkpoint for the evaluation tests, saved by a Lightning Trainer without training (random
decoder and random backbone: no cached stand-in needed)."""

from __future__ import annotations

from pathlib import Path

import torch

RANDOM_BACKBONE = "clip.pretrained=null"


def save_tiny_checkpoint(
    path: Path, image_size: int = 32, threshold: float | None = 0.35, decoder_ckpt: str | None = None
) -> Path:
    """`path` holds a SynSeg Lightning checkpoint whose Segmenter config has `image_size` (what a run on
    images of that size writes) and the val-selected `threshold`; with `decoder_ckpt`, its hyper-parameters
    say the head started from that dense-pretrained file (as `MODEL=synseg` runs do)."""
    import lightning as L

    from tests.modules import build_module

    module = build_module("synseg")
    if threshold is not None:
        module.val_thresholds = {"toy": threshold}
    trainer = L.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu"
    )
    trainer.strategy.connect(module)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["segmenter"]["threshold"] == threshold
    assert not any(k.startswith("segmenter.backbone.") for k in state["state_dict"])
    state["segmenter"]["image_size"] = image_size  # the datamodule's image size in a real run
    if decoder_ckpt is not None:
        state["hyper_parameters"].update(decoder_init="clipseg", decoder_ckpt=decoder_ckpt)
    torch.save(state, path)
    return path
