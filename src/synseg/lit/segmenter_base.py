"""`FrozenBackboneSegmenter`: what every decoder-on-frozen-CLIP LightningModule shares.

A frozen open_clip backbone, a trainable SynSeg head, one activation map per (image, text) pair, `segment()`
for the shared evaluator, an optimiser over the head only, and checkpoints without the frozen weights."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from synseg.lit.toyclip_module import warmup_cosine
from synseg.models.backbone import FrozenCLIP
from synseg.models.registry import create_model

log = logging.getLogger(__name__)
BACKBONE_PREFIX = "backbone."
META_KEY = "synseg_meta"  # checkpoint entry written by `checkpoint_meta`
RNG_KEY = "synseg_module_rng"  # the state of a module's own sampler (`self.rng`), for exact resume
TEXT_CACHE_KEY = "synseg_text_cache"  # the frozen text tower's cached prompt embeddings, for exact resume


class FrozenBackboneSegmenter(L.LightningModule):
    """Base module: `backbone` and `head` are config dicts; `optimizer` is a `_partial_` optimiser."""

    requires_training = True  # False: evaluation only (train.py skips fit)

    def __init__(
        self,
        backbone: dict,
        head: dict | None = None,
        optimizer: Any = None,
        warmup_steps: int = 50,
        templates: tuple[str, ...] = ("a photo of a {}.",),
        name: str = "segmenter",
        eval_chunk: int = 256,
        arch: str = "synseg_head",
        text_condition: str = "unit",
    ) -> None:
        super().__init__()
        if text_condition not in ("unit", "raw"):
            raise ValueError(f"model.text_condition: {text_condition!r}; expected unit or raw")
        # The optimiser is a Hydra `_partial_` factory: used here, not stored (checkpoints hold plain data).
        self.save_hyperparameters(logger=False, ignore=["optimizer"])
        self.optimizer_factory = optimizer
        self.backbone = FrozenCLIP(**backbone)
        b = self.backbone
        self.head = create_model(
            arch,
            width=b.width,
            embed_dim=b.embed_dim,
            n_layers=len(b.extract_layers),
            patch_size=b.patch_size,
            **(head or {}),
        )
        self.class_text: torch.Tensor | None = None  # (C, D) unit-norm class embeddings (protocol)
        self.class_cond: torch.Tensor | None = None  # (C, D) what the head is conditioned on
        self.eval_results: dict[str, dict] = {}

    # ---- pairs of (image, text) -> maps ---------------------------------------------------------------
    def embed_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditioning, unit-norm) text embeddings (P, D) of prompts; conditioning is the raw CLIP text
        feature with `text_condition=raw` (CLIPSeg's FiLM was trained on those), else the unit one."""
        raw = self.backbone.encode_prompts(prompts, normalize=False).to(self.device)
        unit = F.normalize(raw, dim=-1)
        return (raw if self.hparams.text_condition == "raw" else unit), unit

    def pair_maps(
        self, feats: dict, index: torch.Tensor, text: torch.Tensor, unit: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps for P pairs: image `index` (P,) with conditioning text embedding `text` (P, D) (and its
        unit-norm version for the prior). Returns logits (P, 1, H, W) and projected features (P, N, D)."""
        prior = None
        if self.head.decoder.prior is not None:  # cosine of the frozen dense tokens with the text: (P, N)
            unit = F.normalize(text, dim=-1) if unit is None else unit
            prior = torch.einsum("pnd,pd->pn", F.normalize(feats["dense"][index], dim=-1), unit)
        return self.head(feats["layers"], text, feats["grid"], prior, index)

    @staticmethod
    def grid_activation(logits: torch.Tensor, patch: int) -> torch.Tensor:
        """(P, 1, H, W) logits -> (P, N) mean sigmoid activation per patch cell."""
        return F.avg_pool2d(torch.sigmoid(logits), patch).flatten(1)

    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) activation maps in [0, 1] for the classes in `self.class_text` (C, D)."""
        feats = self.backbone.encode_images(images)
        b, c = images.shape[0], self.class_text.shape[0]
        index = torch.arange(b, device=images.device).repeat_interleave(c)
        text = self.class_cond.repeat(b, 1)
        unit = self.class_text.repeat(b, 1)
        out = []
        step = self.hparams.eval_chunk
        for s in range(0, index.numel(), step):
            sl = slice(s, s + step)
            logits, _ = self.pair_maps(feats, index[sl], text[sl], unit[sl])
            out.append(torch.sigmoid(logits))
        maps = torch.cat(out).view(b, c, *images.shape[-2:])
        return maps

    def set_classes(self, names: list[str], templates: list[str] | None = None) -> None:
        """Encodes the foreground class names for `segment`, averaged over `templates` (the protocol's set;
        default: the model's `templates`)."""
        templates = list(templates or self.hparams.templates)
        self.class_text = self.backbone.encode_classnames(names, templates).to(self.device)
        raw = self.hparams.text_condition == "raw"
        self.class_cond = self.backbone.encode_classnames(names, templates, normalize=not raw).to(self.device)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Metrics are computed by `SegmentationEvalCallback`, which calls `segment`."""

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        """See `validation_step`."""

    # ---- optimisation: the head only ------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.head.parameters() if p.requires_grad]
        opt = self.optimizer_factory(params=params) if self.optimizer_factory else torch.optim.AdamW(params)
        total = max(1, self.trainer.max_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, self.hparams.warmup_steps, total)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- checkpoints without the frozen backbone -------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sd = checkpoint["state_dict"]
        for k in [k for k in sd if k.startswith(BACKBONE_PREFIX)]:
            del sd[k]
        checkpoint[META_KEY] = self.checkpoint_meta()
        if isinstance(getattr(self, "rng", None), random.Random):  # a sampler of the training step
            checkpoint[RNG_KEY] = self.rng.getstate()
        # A prompt's embedding depends (in the last bits) on the batch it was first encoded in; the cache
        # travels with the checkpoint so a resumed run reuses exactly the embeddings it had.
        checkpoint[TEXT_CACHE_KEY] = self.backbone.text_cache_state()

    def checkpoint_meta(self) -> dict[str, Any]:
        """What evaluation tools need to rebuild and run this model from a checkpoint alone: the module
        class, the training image size and the background threshold selected on val (None if never)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        transform = getattr(dm, "transform", None)
        selected = [
            r["best_threshold"] for r in self.eval_results.get("val", {}).values() if "best_threshold" in r
        ]
        return {
            "module": f"{type(self).__module__}.{type(self).__qualname__}",
            "image_size": getattr(transform, "size", None),
            "threshold": selected[0] if selected else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if TEXT_CACHE_KEY in checkpoint:
            self.backbone.load_text_cache_state(checkpoint[TEXT_CACHE_KEY])
        if RNG_KEY in checkpoint and isinstance(getattr(self, "rng", None), random.Random):
            version, internal, gauss = checkpoint[RNG_KEY]
            self.rng.setstate((version, tuple(internal), gauss))
        sd = checkpoint["state_dict"]
        for k, v in self.backbone.state_dict(prefix=BACKBONE_PREFIX).items():
            sd.setdefault(k, v)

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
