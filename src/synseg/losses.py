"""Losses: SynSeg's Multi-Category Contrastive Learning (`mccl_loss`) and CLIP's symmetric InfoNCE
(`clip_contrastive_loss`, used by the MixReorg baseline).

Shapes: B images, K category slots per image (`valid` marks the real ones), D feature dim."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

MCCL_TERMS = ("align", "cont", "back", "sep")


def loss_weights(weights: dict[str, float], terms: tuple[str, ...]) -> tuple[float, ...]:
    """Named loss weights (e.g. {"align": 1, "cont": 1, "back": 1, "sep": 0}) as a tuple in `terms` order;
    a missing or unknown name is a ValueError naming `model.loss.weights` and the expected names."""
    if not isinstance(weights, dict) or set(weights) != set(terms):
        given = sorted(weights) if isinstance(weights, dict) else weights
        raise ValueError(
            f"model.loss.weights: {given}; expected one weight per term, named {', '.join(terms)} "
            f"(e.g. model.loss.weights.{terms[-1]}=0)"
        )
    return tuple(float(weights[t]) for t in terms)


def bounded_similarity(
    a: torch.Tensor, b: torch.Tensor, clamp: tuple[float, float], soft: bool = False
) -> torch.Tensor:
    """Cosine similarity over the last dim, mapped into [lo, hi].

    hard (the paper): clamp(cos, lo, hi), whose gradient is zero outside the range;
    soft (our option): lo + (hi - lo) * (1 + cos) / 2, which keeps a gradient everywhere."""
    return _bound(F.cosine_similarity(a, b, dim=-1, eps=1e-8), clamp, soft)


def _bound(cos: torch.Tensor, clamp: tuple[float, float], soft: bool) -> torch.Tensor:
    lo, hi = clamp
    return lo + (hi - lo) * (1.0 + cos) / 2.0 if soft else cos.clamp(lo, hi)


def _mean_over_images(
    per_image: torch.Tensor,
    qualifies: torch.Tensor,
    count_sync: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean of per-image values over the images that qualify; 0 (with a graph) when none does.

    Under DDP, `count_sync` turns the local count into the mean count per rank, so that DDP's gradient
    averaging gives exactly the gradient of the mean over the global batch."""
    n = qualifies.float().sum()
    if count_sync is not None:
        n = count_sync(n.detach())
    return (per_image * qualifies).sum() / n.clamp(min=1e-6 if count_sync is not None else 1)


def mccl_loss(
    fg: torch.Tensor,
    bg: torch.Tensor,
    text: torch.Tensor,
    valid: torch.Tensor,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
    clamp: tuple[float, float] = (0.005, 0.995),
    soft: bool = False,
    count_sync: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """SynSeg's MCCL. fg, bg, text: (B, K, D); valid: bool (B, K). Returns align, cont, back, sep, total.

    Per image with N valid categories:
      align = -(1/N) sum_c log sim(f_c, t_c)           cont = -(1/N) sum_c log(1 - sim(f_c, fbar_c))
      back  = -(1/(N(N-1))) sum_{j!=k} log sim(fbar_j, fbar_k)
      sep   = -(1/(N(N-1))) sum_{j!=k} log(1 - sim(f_j, f_k))
    then each term is averaged over the images where it is defined (N >= 1, resp. N >= 2)."""
    if fg.shape != bg.shape or fg.shape != text.shape or fg.shape[:2] != valid.shape:
        raise ValueError(
            f"mccl_loss: fg {tuple(fg.shape)}, bg {tuple(bg.shape)}, text {tuple(text.shape)} must "
            f"all be (B, K, D) and valid {tuple(valid.shape)} must be (B, K)"
        )
    valid = valid.bool()
    v = valid.float()
    n = v.sum(1)  # (B,)
    k = valid.shape[1]

    # Unit vectors once; the pairwise terms are then batched matrix products, not (B, K, K, D) broadcasts.
    fn, bn, tn = (F.normalize(x, dim=-1, eps=1e-8) for x in (fg, bg, text))
    sim_ft = _bound((fn * tn).sum(-1), clamp, soft)  # (B, K)
    sim_fb = _bound((fn * bn).sum(-1), clamp, soft)  # (B, K)
    align_img = -(torch.log(sim_ft) * v).sum(1) / n.clamp(min=1)
    cont_img = -(torch.log1p(-sim_fb) * v).sum(1) / n.clamp(min=1)

    pair = (valid[:, :, None] & valid[:, None, :]) & ~torch.eye(k, dtype=torch.bool, device=valid.device)
    pf = pair.float()  # (B, K, K) ordered pairs j != k
    n_pairs = pf.sum((1, 2)).clamp(min=1)
    sim_bb = _bound(bn @ bn.transpose(1, 2), clamp, soft)  # (B, K, K)
    sim_ff = _bound(fn @ fn.transpose(1, 2), clamp, soft)
    back_img = -(torch.log(sim_bb) * pf).sum((1, 2)) / n_pairs
    sep_img = -(torch.log1p(-sim_ff) * pf).sum((1, 2)) / n_pairs

    one, two = n >= 1, n >= 2
    out = {
        "align": _mean_over_images(align_img, one, count_sync),
        "cont": _mean_over_images(cont_img, one, count_sync),
        "back": _mean_over_images(back_img, two, count_sync),
        "sep": _mean_over_images(sep_img, two, count_sync),
    }
    out["total"] = sum(w * out[t] for w, t in zip(weights, MCCL_TERMS, strict=True))
    return out


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows concatenated in rank order, with gradients flowing back to every rank (open_clip's
    `gather_with_grad`); the tensor itself outside DDP."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    import torch.distributed.nn

    return torch.cat(torch.distributed.nn.all_gather(x), dim=0)


def clip_contrastive_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    """Symmetric InfoNCE with open_clip's distributed semantics (`ClipLoss(local_loss=True,
    gather_with_grad=True)`): this rank's B rows against the gathered global batch, labels offset by
    rank * B. Features are expected L2-normalised (as open_clip's models return them)."""
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    all_image, all_text = gather_with_grad(image_features), gather_with_grad(text_features)
    logits_per_image = logit_scale * image_features @ all_text.T  # (B, world * B)
    logits_per_text = logit_scale * text_features @ all_image.T
    b = image_features.shape[0]
    labels = torch.arange(b, device=image_features.device) + rank * b
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
