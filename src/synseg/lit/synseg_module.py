"""`SynSegModule`: frozen CLIP -> decoder map per (image, caption category) -> FSS -> MCCL.

Every choice the prototype found decisive is a switch (see the method note): decoder init (random or the
dense-pretrained stand-in for CLIPSeg), where V comes from (FiLM-conditioned features as in the paper, or
the frozen CLIP dense tokens), the clamp (hard or soft), negatives for categories absent from the caption,
a presence (multiple-instance) BCE, an InfoNCE of f_c against the batch's prompts, a CLIP-similarity prior
into the head (`head.prior`), and an L_align-only warm-up."""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F

from synseg.lit.distributed import (
    batch_mean,
    gather_objects,
    is_distributed,
    mean_count_per_rank,
    rank_and_world,
)
from synseg.lit.segmenter_base import FrozenBackboneSegmenter
from synseg.losses import MCCL_TERMS, loss_weights, mccl_loss
from synseg.models.feature_synergy import feature_synergy


class SynSegModule(FrozenBackboneSegmenter):
    """SynSeg training on caption categories. `loss.weights` name the MCCL terms: align, cont, back, sep."""

    def __init__(
        self,
        segmenter: dict[str, Any],
        optimizer: Any,
        warmup_steps: int,
        decoder_init: str,
        decoder_ckpt: str | None,
        fss_source: str,
        loss: dict[str, Any],
        negatives: dict[str, Any],
        presence_weight: float,
        prompt_nce_weight: float,
        align_warmup_steps: int,
    ) -> None:
        super().__init__(segmenter, optimizer, warmup_steps)
        if decoder_init not in ("random", "clipseg"):
            raise ValueError(f"model.decoder_init: {decoder_init!r}; expected random or clipseg")
        if fss_source not in ("conditioned", "frozen"):
            raise ValueError(f"model.fss_source: {fss_source!r}; expected conditioned or frozen")
        self.loss_cfg = dict(loss)
        self.weights = loss_weights(loss.get("weights", {}), MCCL_TERMS)
        if self.loss_cfg.get("clamp_mode") not in ("hard", "soft"):
            raise ValueError(
                f"model.loss.clamp_mode: {self.loss_cfg.get('clamp_mode')!r}; expected hard or soft"
            )
        self.neg_cfg = dict(negatives)
        if decoder_init == "clipseg":
            if not decoder_ckpt:
                raise ValueError("model.decoder_ckpt: required with decoder_init=clipseg")
            if str(decoder_ckpt).endswith((".pt", ".pth")):  # the toy stand-in (or any head state dict)
                self.load_head(decoder_ckpt, decoder_only=True)
            else:  # a Hugging Face id of CLIPSeg weights, e.g. CIDAS/clipseg-rd64-refined
                from synseg.models.clipseg_weights import load_clipseg_decoder

                load_clipseg_decoder(self.head.decoder, decoder_ckpt)
        self.rng = random.Random(0)
        self.skipped_no_category = 0

    # ---- one training step ----------------------------------------------------------------------------
    def _global_categories(self, categories: list[list[str]]) -> tuple[list[list[str]], int]:
        """The categories of every image of the global batch (all ranks, in rank order) and the index of
        this rank's first image in it."""
        everyone = gather_objects([list(c) for c in categories])
        rank, _ = rank_and_world()
        return [c for part in everyone for c in part], sum(len(part) for part in everyone[:rank])

    def _negatives(self, everyone: list[list[str]], first: int, n_local: int) -> list[tuple[int, str]]:
        """(local image, category) pairs: categories of other captions of the global batch absent from this
        one. Every rank draws for the whole global batch from the same sampler (its state is in the
        checkpoint), so 1 process x B images and W processes x B/W draw the same negatives."""
        pool = sorted({c for cats in everyone for c in cats if c})
        out = []
        for b, cats in enumerate(everyone):
            absent = [c for c in pool if c not in cats]
            picks = self.rng.sample(absent, min(self.neg_cfg["per_image"], len(absent)))
            if first <= b < first + n_local:
                out += [(b - first, c) for c in picks]
        return out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images, valid, categories = batch["images"], batch["category_valid"], batch["categories"]
        bsz, k = valid.shape
        template = self.segmenter.config["templates"][0]
        feats = self.backbone.encode_images(images)
        pos = valid.nonzero()  # (P, 2): image, slot
        use_negatives = bool(self.neg_cfg["weight"] or self.hparams.presence_weight)
        everyone, first = ([], 0)
        if use_negatives or self.hparams.prompt_nce_weight:  # a collective under DDP: every rank calls it
            everyone, first = self._global_categories(categories)
        neg = self._negatives(everyone, first, bsz) if use_negatives else []
        words = [categories[b][s] for b, s in pos.tolist()] + [c for _, c in neg]
        index = torch.cat(
            [pos[:, 0], torch.tensor([b for b, _ in neg], dtype=torch.long, device=images.device)]
        )
        n_pos = pos.shape[0]
        terms: dict[str, torch.Tensor] = {}
        zero = images.new_zeros(())
        n_pairs = index.numel()
        if is_distributed():  # every rank must take the same branch (the loss below has collectives)
            n_pairs = float(mean_count_per_rank(images.new_tensor(float(n_pairs))))
        if n_pairs == 0:  # no category in the whole (global) batch: nothing to learn, the step still runs
            total = sum(p.sum() * 0 for p in self.head.parameters())
            self.log("train/loss", total, batch_size=bsz)
            return total
        cond, text = self.segmenter.embed_prompts([template.format(w) for w in words])  # (P', D) each
        logits, v_cond = self.segmenter.pair_maps(feats, index, cond, text)
        act = self.grid_activation(logits)  # (P', N)
        values = v_cond[:n_pos] if self.hparams.fss_source == "conditioned" else feats["dense"][index[:n_pos]]
        fg, bg = feature_synergy(values, act[:n_pos])  # (P, D) each

        d = fg.shape[-1]
        fg_b, bg_b, tx_b = (images.new_zeros(bsz, k, d, dtype=torch.float32) for _ in range(3))
        # (B, K, D) in float32 (MCCL's logs of clamped cosines need it under bf16 autocast)
        fg_b = fg_b.index_put((pos[:, 0], pos[:, 1]), fg.float())
        bg_b = bg_b.index_put((pos[:, 0], pos[:, 1]), bg.float())
        tx_b = tx_b.index_put((pos[:, 0], pos[:, 1]), text[:n_pos].float())
        weights = self.weights
        if self.global_step < self.hparams.align_warmup_steps:
            weights = (weights[0], 0.0, 0.0, 0.0)
        mccl = mccl_loss(
            fg_b,
            bg_b,
            tx_b,
            valid,
            weights,
            tuple(self.loss_cfg["clamp"]),
            soft=self.loss_cfg["clamp_mode"] == "soft",
            count_sync=mean_count_per_rank if is_distributed() else None,
        )
        terms.update({t: mccl[t] for t in MCCL_TERMS})
        total = mccl["total"]

        # Means below are over the global batch under DDP (see lit.distributed), plain means otherwise.
        if use_negatives and self.neg_cfg["weight"]:  # absent categories: activation pushed to 0 everywhere
            neg_loss = -torch.log1p(-act[n_pos:].clamp(max=1 - 1e-4))  # (P_neg, N)
            if is_distributed():
                terms["negative"] = neg_loss.sum() / mean_count_per_rank(act.new_tensor(neg_loss.numel()))
            else:
                terms["negative"] = neg_loss.mean() if neg else zero
            total = total + self.neg_cfg["weight"] * terms["negative"]
        if self.hparams.presence_weight:  # MIL: max activation is 1 for caption categories, 0 for absent ones
            presence = act.max(-1).values.clamp(1e-4, 1 - 1e-4)
            target = torch.cat([presence.new_ones(n_pos), presence.new_zeros(len(neg))])
            terms["presence"] = batch_mean(F.binary_cross_entropy, presence, target, count=presence.numel())
            total = total + self.hparams.presence_weight * terms["presence"]
        if self.hparams.prompt_nce_weight:  # f_c must pick its own prompt among the global batch's prompts
            uniq = sorted({c for cats in everyone for c in cats if c})
            bank = self.segmenter.embed_prompts([template.format(w) for w in uniq])[1]
            target = torch.tensor([uniq.index(w) for w in words[:n_pos]], device=images.device)
            scale = self.backbone.clip.logit_scale.exp().detach()
            logits_nce = scale * F.normalize(fg, dim=-1) @ bank.T  # (P, |uniq|)
            terms["prompt_nce"] = batch_mean(F.cross_entropy, logits_nce, target, count=n_pos)
            total = total + self.hparams.prompt_nce_weight * terms["prompt_nce"]
        terms["total"] = total

        no_cat = int((~valid.any(1)).sum())
        self.skipped_no_category += no_cat
        for name, value in terms.items():
            self.log(
                f"train/loss/{name}" if name != "total" else "train/loss",
                value,
                batch_size=bsz,
                prog_bar=name == "total",
            )
        self.log_dict(
            {
                "train/no_category_images": float(self.skipped_no_category),
                "train/text_cache_hit_rate": self.backbone.cache_hit_rate,
                "train/act_mean_pos": act[:n_pos].mean().detach(),
                "train/act_mean_neg": act[n_pos:].mean().detach() if neg else zero,
            },
            batch_size=bsz,
        )
        return total
