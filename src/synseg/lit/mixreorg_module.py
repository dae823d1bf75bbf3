"""`MixReorgModule`: the MixReorg-style baseline on the shared frozen CLIP (see configs/model/mixreorg.yaml).

Per batch: mix the pixel patches of groups of M images (`synseg.mixing`), encode originals and mixed images
with the frozen image tower, add each patch's source-image global token (progressive mixing), embed every
patch with a trainable head, restore the mixed embeddings to their source images, and train
  L = w_seg * CE(mixed patch vs its group's M captions, src) + w_orig * InfoNCE(pooled original, captions)
      + w_rest * InfoNCE(pooled restored, captions).
Inference (synseg.models.Segmenter, kind mixreorg) runs the original branch only: per-patch cosine with class
prompts, a softmax over classes."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from synseg.lit.distributed import rank_and_world
from synseg.lit.segmenter_base import FrozenBackboneSegmenter
from synseg.losses import clip_contrastive_loss, loss_weights
from synseg.mixing import apply_sources, from_patches, mix_sources, restore_patches, to_patches

MIXREORG_TERMS = ("seg", "orig", "rest")


class MixReorgModule(FrozenBackboneSegmenter):
    """MixReorg training on image-caption pairs; `loss.weights` name the terms: seg, orig, rest."""

    def __init__(
        self,
        segmenter: dict[str, Any],
        optimizer: Any,
        warmup_steps: int,
        group_size: int,
        block: int,
        loss: dict[str, Any],
        mix_seed: int,
    ) -> None:
        super().__init__(segmenter, optimizer, warmup_steps)
        if group_size < 2:
            raise ValueError(f"model.group_size: {group_size}; expected >= 2 images per mixing group")
        self.weights = dict(
            zip(MIXREORG_TERMS, loss_weights(loss.get("weights", {}), MIXREORG_TERMS), strict=True)
        )

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
        z_orig, scale = self.segmenter.patch_embeddings(feats, globals_)
        z_mix, _ = self.segmenter.patch_embeddings(mixed_feats, globals_, src)
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
