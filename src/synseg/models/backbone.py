"""`FrozenCLIP`: a frozen open_clip CLIP exposing what dense methods need.

- patch tokens of chosen intermediate layers (for CLIPSeg-style decoders),
- dense tokens in the joint image-text space (plain `ln_post(x) @ proj`, or MaskCLIP's value path),
- cached text embeddings of prompts (the text tower is frozen, so a prompt is encoded once).
Frozen means eval mode and no gradients; the LightningModules keep it out of the optimiser and checkpoints."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from synseg.clip_configs import STANDIN_CLIP
from synseg.models.dense_attention import NACLIP_SIGMA, maskclip_dense, naclip_dense
from synseg.models.toyclip import build_open_clip

DENSE_MODES = ("maskclip", "naclip", "tokens")  # the last block: MaskCLIP value path, NACLIP, or run in full


def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(1 + N, W) positional embedding bicubically resized to a new patch grid (class token kept)."""
    n_old = pos.shape[0] - 1
    if n_old == grid[0] * grid[1]:
        return pos
    side = int(round(n_old**0.5))
    patch = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([pos[:1], patch.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)], dim=0)


class FrozenCLIP(nn.Module):
    """Frozen open_clip CLIP. `pretrained`: an open_clip tag ("openai") or a local checkpoint path."""

    def __init__(
        self,
        model_name: str = STANDIN_CLIP,
        pretrained: str | None = None,
        extract_layers: Sequence[int] = (1, 2, 3),
        dense_mode: str = "maskclip",
        naclip_sigma: float = NACLIP_SIGMA,
    ) -> None:
        super().__init__()
        import open_clip

        if dense_mode not in DENSE_MODES:
            raise ValueError(f"backbone.dense_mode: {dense_mode!r}; expected one of {', '.join(DENSE_MODES)}")
        self.model_name, self.dense_mode, self.naclip_sigma = model_name, dense_mode, float(naclip_sigma)
        self.clip = build_open_clip(model_name, pretrained)
        self.clip.requires_grad_(False)
        self.clip.eval()
        visual = self.clip.visual
        n_layers = len(visual.transformer.resblocks)
        bad = [i for i in extract_layers if not 0 <= i < n_layers]
        if bad:
            raise ValueError(f"backbone.extract_layers: {bad} outside 0..{n_layers - 1} for {model_name}")
        self.extract_layers = tuple(extract_layers)
        self.width = visual.transformer.width
        self.embed_dim = (
            self.clip.text_projection.shape[1]
            if self.clip.text_projection is not None
            else (visual.proj.shape[1])
        )
        self.patch_size = visual.patch_size[0]
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self._text_cache: dict[str, torch.Tensor] = {}
        self.cache_hits = self.cache_misses = 0

    def train(self, mode: bool = True) -> FrozenCLIP:
        super().train(mode)
        self.clip.eval()  # always eval: frozen
        return self

    @property
    def cache_hit_rate(self) -> float:
        total = self.cache_hits + self.cache_misses
        return self.cache_hits / total if total else 0.0

    @torch.no_grad()
    def encode_images(
        self, images: torch.Tensor, pooled: bool = False
    ) -> dict[str, torch.Tensor | list[torch.Tensor] | tuple]:
        """layers: list of (B, 1 + N, W) tokens after each extract layer; dense: (B, N, D) joint-space tokens
        (not normalised); grid: (h, w); with `pooled=True` also pooled: (B, D), the image embedding.

        Runs only the blocks it needs: in `maskclip` / `naclip` mode the last block contributes its dense path
        alone (synseg.models.dense_attention), so without `pooled` it is never run in full."""
        v = self.clip.visual
        b, _, h, w = images.shape
        grid = (h // self.patch_size, w // self.patch_size)
        x = v.conv1(images).flatten(2).transpose(1, 2)  # (B, N, W)
        cls = v.class_embedding.to(x.dtype).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1) + resize_pos_embed(v.positional_embedding, grid).to(x.dtype)
        x = v.ln_pre(x)
        layers = []
        blocks = v.transformer.resblocks
        last = len(blocks) - 1
        run_last = pooled or self.dense_mode == "tokens" or last in self.extract_layers
        for i, blk in enumerate(blocks):
            if i == last and self.dense_mode == "maskclip":
                dense = maskclip_dense(blk, x)
            elif i == last and self.dense_mode == "naclip":
                dense = naclip_dense(blk, x, grid, self.naclip_sigma)
            if i == last and not run_last:
                break
            x = blk(x)
            if i in self.extract_layers:
                layers.append(x)
        out: dict = {"layers": layers, "grid": grid}
        if run_last:
            pool, tokens = v._pool(x)
            if pooled:
                out["pooled"] = pool @ v.proj if v.proj is not None else pool
            if self.dense_mode == "tokens":
                dense = tokens
        if self.dense_mode in ("maskclip", "naclip"):
            dense = v.ln_post(dense)
        out["dense"] = dense @ v.proj if v.proj is not None else dense
        return out

    @torch.no_grad()
    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised text embeddings of token rows."""
        return F.normalize(self.clip.encode_text(tokens), dim=-1)

    def text_cache_state(self) -> dict[str, object]:
        """The prompt cache as plain data: prompts, stacked (P, D) embeddings and the hit counters."""
        prompts = list(self._text_cache)
        emb = torch.stack([self._text_cache[p] for p in prompts]).cpu() if prompts else torch.zeros(0)
        return {"prompts": prompts, "embeddings": emb, "hits": self.cache_hits, "misses": self.cache_misses}

    def load_text_cache_state(self, state: dict) -> None:
        """Restores `text_cache_state` (embeddings onto the tower's device)."""
        device = self.clip.token_embedding.weight.device
        emb = state.get("embeddings")
        self._text_cache = {p: emb[i].to(device) for i, p in enumerate(state.get("prompts", []))}
        self.cache_hits, self.cache_misses = int(state.get("hits", 0)), int(state.get("misses", 0))

    @torch.no_grad()
    def encode_prompts(
        self, prompts: Sequence[str], normalize: bool = True, cache: bool = True
    ) -> torch.Tensor:
        """(N, D) text embeddings of prompts (normalised unless `normalize=False`), cached by prompt;
        `cache=False` for free-form captions, which rarely repeat (a cache of them would only grow)."""
        if not prompts:  # (0, D): e.g. a DDP rank whose share of the batch has no category
            return self.clip.token_embedding.weight.new_zeros(0, self.embed_dim)
        if cache:
            missing = sorted({p for p in prompts if p not in self._text_cache})
            self.cache_misses += len(missing)
            self.cache_hits += len(prompts) - len(missing)
            if missing:
                self._text_cache.update(dict(zip(missing, self._encode_text(missing), strict=True)))
            out = torch.stack([self._text_cache[p] for p in prompts])
        else:
            out = self._encode_text(prompts)
        return F.normalize(out, dim=-1) if normalize else out

    def _encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Raw (N, D) text-tower embeddings of prompts, computed on the tower's device."""
        device = self.clip.text_projection.device if self.clip.text_projection is not None else "cpu"
        return self.clip.encode_text(self.tokenizer(list(prompts)).to(device))

    @torch.no_grad()
    def encode_classnames(
        self, names: Sequence[str], templates: Sequence[str], normalize: bool = True, cache: bool = True
    ) -> torch.Tensor:
        """(C, D) per class: the mean of its normalised template embeddings, normalised again (protocol);
        with `normalize=False`, the mean of the raw embeddings (what CLIPSeg's FiLM expects)."""
        prompts = [t.format(n) for n in names for t in templates]
        emb = self.encode_prompts(prompts, normalize=normalize, cache=cache)
        emb = emb.view(len(names), len(templates), -1).mean(1)
        return F.normalize(emb, dim=-1) if normalize else emb
