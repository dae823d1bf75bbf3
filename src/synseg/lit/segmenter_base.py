"""`FrozenBackboneSegmenter`: what every LightningModule that trains (or evaluates) a `Segmenter` shares.

The inference model is `self.segmenter` (synseg.models.Segmenter: frozen CLIP, head, prompts, threshold);
this class adds only training: the optimiser over the head, checkpoints without the frozen weights but with
the Segmenter's config (so `Segmenter.load` reads a checkpoint without this class), and what exact resume
needs (the module's own sampler and the text tower's prompt cache)."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import torch

from synseg.lit.optim import optimizer_config
from synseg.models.segmenter import CKPT_KEY, Segmenter

log = logging.getLogger(__name__)
BACKBONE_PREFIX = "segmenter.backbone."
RNG_KEY = "synseg_module_rng"  # the state of a module's own sampler (`self.rng`), for exact resume
TEXT_CACHE_KEY = "synseg_text_cache"  # the frozen text tower's cached prompt embeddings, for exact resume
THRESHOLDS_KEY = "val_thresholds"  # per val set, the threshold val chose for these weights (used by test)


class FrozenBackboneSegmenter(L.LightningModule):
    """Base module. `segmenter`: the Segmenter's config node (kind, backbone, head, templates, ...);
    `optimizer`: a `_partial_` optimiser (not stored in checkpoints); `warmup_steps` of the schedule."""

    requires_training = True  # False: evaluation only (train.py skips fit)

    def __init__(self, segmenter: dict[str, Any], optimizer: Any = None, warmup_steps: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["optimizer"])
        self.optimizer_factory = optimizer
        self.segmenter = Segmenter(**segmenter)
        self.eval_results: dict[str, dict] = {}
        self.val_thresholds: dict[str, float] = {}  # per val set: the background threshold val chose

    @property
    def backbone(self) -> torch.nn.Module:
        return self.segmenter.backbone

    @property
    def head(self) -> torch.nn.Module:
        return self.segmenter.head

    def grid_activation(self, logits: torch.Tensor) -> torch.Tensor:
        """(P, 1, H, W) logits -> (P, N) mean sigmoid activation per patch cell."""
        return torch.nn.functional.avg_pool2d(torch.sigmoid(logits), self.backbone.patch_size).flatten(1)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Metrics are computed by `SegmentationEvalCallback` on `self.segmenter`."""

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        """See `validation_step`."""

    # ---- optimisation: the head only ------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.head.parameters() if p.requires_grad]
        return optimizer_config(
            params, self.optimizer_factory, self.hparams.warmup_steps, self.trainer.max_steps
        )

    # ---- checkpoints: the Segmenter's config, no frozen weights ------------------------------------------
    def segmenter_config(self) -> dict[str, Any]:
        """The Segmenter's config as it is now: the training image size and the val-selected threshold."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        config = dict(self.segmenter.config)
        if getattr(dm, "image_size", None):
            config["image_size"] = int(dm.image_size)
        if self.val_thresholds:
            config["threshold"] = float(next(iter(self.val_thresholds.values())))
        return config

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sd = checkpoint["state_dict"]
        for k in [k for k in sd if k.startswith(BACKBONE_PREFIX)]:
            del sd[k]
        checkpoint[CKPT_KEY] = self.segmenter_config()
        checkpoint[THRESHOLDS_KEY] = dict(self.val_thresholds)
        if isinstance(getattr(self, "rng", None), random.Random):  # a sampler of the training step
            checkpoint[RNG_KEY] = self.rng.getstate()
        # A prompt's embedding depends (in the last bits) on the batch it was first encoded in; the cache
        # travels with the checkpoint so a resumed run reuses exactly the embeddings it had.
        checkpoint[TEXT_CACHE_KEY] = self.backbone.text_cache_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if TEXT_CACHE_KEY in checkpoint:
            self.backbone.load_text_cache_state(checkpoint[TEXT_CACHE_KEY])
        if RNG_KEY in checkpoint and isinstance(getattr(self, "rng", None), random.Random):
            version, internal, gauss = checkpoint[RNG_KEY]
            self.rng.setstate((version, tuple(internal), gauss))
        if CKPT_KEY in checkpoint and checkpoint[CKPT_KEY].get("threshold") is not None:
            self.segmenter.threshold = checkpoint[CKPT_KEY]["threshold"]
        self.val_thresholds = {str(k): float(v) for k, v in checkpoint.get(THRESHOLDS_KEY, {}).items()}
        sd = checkpoint["state_dict"]
        for k, v in self.backbone.state_dict(prefix=BACKBONE_PREFIX).items():
            sd.setdefault(k, v)

    def export(self, metrics: dict[str, float], run_dir: Path) -> Path | None:
        """Writes the trained Segmenter (with the test's threshold) as `run_dir/model.synseg` (rank 0)."""
        if self.global_rank != 0:
            return None
        self.segmenter.config.update(self.segmenter_config())
        return self.segmenter.save(run_dir / "model.synseg")

    def load_head(self, path: str | Path, decoder_only: bool = True) -> None:
        """Initialises the head (or its decoder only) from a `head` state dict file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"model.decoder_ckpt: {path} does not exist; build it with `make dense-decoder`"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        if decoder_only:
            state = {k[len("decoder.") :]: v for k, v in state.items() if k.startswith("decoder.")}
            self.head.decoder.load_state_dict(state)
        else:
            self.head.load_state_dict(state)
        log.info("head initialised from %s (%s)", path, "decoder only" if decoder_only else "all")
