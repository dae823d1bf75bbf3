"""A tiny SynSeg checkpoint for the evaluation tests, saved by a Lightning Trainer without training (random
decoder and random backbone: no cached stand-in needed)."""

from __future__ import annotations

from pathlib import Path

import torch

RANDOM_BACKBONE = "model.backbone.pretrained=null"


def save_tiny_checkpoint(
    path: Path, image_size: int = 32, threshold: float | None = 0.35, decoder_ckpt: str | None = None
) -> Path:
    """`path` holds a SynSeg Lightning checkpoint whose synseg_meta has `image_size` (what a run on images of
    that size writes) and the val-selected `threshold`; with `decoder_ckpt`, its hyper-parameters say the head
    started from that dense-pretrained file (as `MODEL=synseg` runs do)."""
    import hydra
    import lightning as L

    from synseg.evaluation.loading import model_config

    module = hydra.utils.instantiate(model_config("synseg", ["model.decoder_init=random", RANDOM_BACKBONE]))
    if threshold is not None:
        module.eval_results = {"val": {"toy": {"best_threshold": threshold}}}
    trainer = L.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu"
    )
    trainer.strategy.connect(module)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    state = torch.load(path, map_location="cpu", weights_only=False)
    assert (
        state["synseg_meta"]["threshold"] == threshold
        and "backbone.clip.logit_scale" not in state["state_dict"]
    )
    state["synseg_meta"]["image_size"] = image_size  # the datamodule's image size in a real run
    if decoder_ckpt is not None:
        state["hyper_parameters"].update(decoder_init="clipseg", decoder_ckpt=decoder_ckpt)
    torch.save(state, path)
    return path
