"""`MixReorgModule`: the MixReorg-style baseline on the shared frozen CLIP (see configs/model/mixreorg.yaml).

Per batch: mix the pixel patches of groups of M images (`synseg.mixing`), encode originals and mixed images
with the frozen image tower, add each patch's source-image global token (progressive mixing), embed every
patch with a trainable head, restore the mixed embeddings to their source images, and train
  L = w_seg * CE(mixed patch vs its group's M captions, src) + w_orig * InfoNCE(pooled original, captions)
      + w_rest * InfoNCE(pooled restored, captions).
Inference runs the original branch only: per-patch cosine with class prompts, a softmax over classes."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from synseg.lit.distributed import rank_and_world
from synseg.lit.segmenter_base import FrozenBackboneSegmenter
from synseg.losses import clip_contrastive_loss
from synseg.mixing import apply_sources, from_patches, mix_sources, restore_patches, to_patches

MIXREORG_TERMS = ("seg", "orig", "rest")


class MixReorgModule(FrozenBackboneSegmenter):
    """MixReorg training on image-caption pairs; `loss.weights` are (seg, orig, rest)."""

    def __init__(
        self,
        backbone: dict,
        head: dict | None = None,
        optimizer: Any = None,
        warmup_steps: int = 50,
        templates: tuple[str, ...] = ("a photo of a {}.",),
        name: str = "mixreorg",
        group_size: int = 2,
        block: int = 2,
        progressive: bool = True,
        loss: dict | None = None,
        mix_seed: int = 0,
        eval_chunk: int = 256,
        arch: str = "mixreorg_head",
        text_condition: str = "unit",
    ) -> None:
        super().__init__(
            backbone, head, optimizer, warmup_steps, templates, name, eval_chunk, arch, text_condition
        )
        if group_size < 2:
            raise ValueError(f"model.group_size: {group_size}; expected >= 2 images per mixing group")
        weights = tuple((loss or {}).get("weights", (1.0, 1.0, 1.0)))
        if len(weights) != len(MIXREORG_TERMS):
            raise ValueError(f"model.loss.weights: {list(weights)}; expected 3 values for {MIXREORG_TERMS}")
        self.weights = dict(zip(MIXREORG_TERMS, (float(w) for w in weights), strict=True))

    # ---- shared by both branches ------------------------------------------------------------------------
    def embed(
        self, feats: dict, globals_: list[torch.Tensor], src: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch embeddings (B', N, D) and the logit scale. `feats`: frozen features of the images the
        patches sit in; `globals_`: (B, W) class tokens per layer of the unmixed images; `src` (B', N) maps
        patches to source images (None: each image is its own source). With progressive mixing each patch
        gets its source image's global token."""
        glob = None
        if self.hparams.progressive:
            n = feats["layers"][0].shape[1] - 1
            glob = [g[:, None].expand(-1, n, -1) if src is None else g[src] for g in globals_]
        return self.head(feats["layers"], glob)

    def mix_layout(self, n_mix: int, grid: tuple[int, int]) -> torch.Tensor:
        """(n_mix, N) source map of this rank's first `n_mix` images at this step: a slice of the layout of
        the global batch, seeded by (mix_seed, step) alone, so it is exact on resume and 1 process x B images
        mixes as W DDP processes x B/W do (each rank's n_mix a multiple of group_size)."""
        rank, world = rank_and_world()
        gen = torch.Generator().manual_seed(int(self.hparams.mix_seed) * 1_000_003 + self.global_step)
        src = mix_sources(n_mix * world, grid, self.hparams.group_size, self.hparams.block, gen)
        return src[rank * n_mix : (rank + 1) * n_mix] - rank * n_mix

    # ---- one training step --------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images, captions = batch["images"], list(batch["captions"])
        m = self.hparams.group_size
        n_mix = images.shape[0] - images.shape[0] % m  # a ragged tail is only used by the original branch
        if n_mix == 0:
            raise ValueError(f"batch of {images.shape[0]} images: expected at least model.group_size={m}")
        patch = self.backbone.patch_size
        tokens, grid = to_patches(images[:n_mix], patch)  # pixel patches (n_mix, N, 3 * patch^2)
        src = self.mix_layout(n_mix, grid).to(images.device)
        mixed = from_patches(apply_sources(tokens, src), grid, images.shape[1], patch)
        feats = self.backbone.encode_images(images)
        mixed_feats = self.backbone.encode_images(mixed)
        globals_ = [layer[:, 0] for layer in feats["layers"]]  # (B, W) per layer: the unmixed images
        z_orig, scale = self.embed(feats, globals_)
        z_mix, _ = self.embed(mixed_feats, globals_, src)
        text = self.backbone.encode_prompts(captions, normalize=True, cache=False).to(images.device)

        # mixed segmentation: each patch against the M captions of its group, label = its source in the group
        g, n, d = n_mix // m, z_mix.shape[1], z_mix.shape[2]
        zm = F.normalize(z_mix, dim=-1).view(g, m, n, d)
        logits = scale * torch.einsum("gmnd,gkd->gmnk", zm, text[:n_mix].view(g, m, d))  # (G, M, N, M)
        target = src.view(g, m, n) - torch.arange(g, device=src.device)[:, None, None] * m
        terms = {"seg": F.cross_entropy(logits.reshape(-1, m), target.reshape(-1))}
        pooled_orig = F.normalize(z_orig.mean(1), dim=-1)
        pooled_rest = F.normalize(restore_patches(z_mix, src).mean(1), dim=-1)
        terms["orig"] = clip_contrastive_loss(pooled_orig, text, scale)
        terms["rest"] = clip_contrastive_loss(pooled_rest, text[:n_mix], scale)
        total = sum(self.weights[k] * terms[k] for k in MIXREORG_TERMS)
        terms["total"] = total

        bsz = images.shape[0]
        for name, value in terms.items():
            key = "train/loss" if name == "total" else f"train/loss/{name}"
            self.log(key, value, batch_size=bsz, prog_bar=name == "total")
        with torch.no_grad():
            acc = (logits.argmax(-1) == target).float().mean()  # mixed patches assigned to their source
        self.log_dict({"train/mix_patch_acc": acc, "train/logit_scale": scale.detach()}, batch_size=bsz)
        return total

    # ---- inference: the original branch only ------------------------------------------------------------
    @torch.no_grad()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) class probabilities: softmax over classes of the scaled patch-prompt cosines."""
        feats = self.backbone.encode_images(images)
        z, scale = self.embed(feats, [layer[:, 0] for layer in feats["layers"]])
        logits = scale * F.normalize(z, dim=-1) @ self.class_text.T  # (B, N, C)
        b, _, c = logits.shape
        probs = logits.softmax(-1).transpose(1, 2).reshape(b, c, *feats["grid"])
        return F.interpolate(probs, size=images.shape[-2:], mode="bilinear", align_corners=False)
