"""`Segmenter`: the one inference model every consumer loads (`make eval`, `python -m synseg.segment`, the
compare gallery, the notebooks): a frozen CLIP, the trained head of a method (or none for the training-free
ones), the backbone's preprocessing, class prompts, and the background threshold chosen on val.

    seg = Segmenter.load("logs/train/<run>/checkpoints/last.ckpt")   # or an exported model.synseg file
    seg.set_classes(["cat", "dog"])
    labels = seg.segment(images)   # (B, 3, H, W) floats in [0, 1] -> (B, H, W) int64, 0 = background

`save` writes our exported format: one safetensors file whose metadata holds a JSON of everything needed to
rebuild the model (method, backbone name and pretrained tag, head config, image size, threshold, protocol
defaults). Neither Lightning nor Hydra is imported here (a test checks `sys.modules`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synseg.models.backbone import FrozenCLIP
from synseg.models.registry import create_model

FORMAT = "synseg-segmenter/1"
KINDS = {"synseg": "synseg_head", "mixreorg": "mixreorg_head", "maskclip": None, "naclip": None}  # -> head
TRAINING_FREE = ("maskclip", "naclip")  # kinds that need no training: built from a backbone alone
CKPT_KEY = "segmenter"  # the Segmenter's config inside a training checkpoint
HEAD_PREFIX = "segmenter.head."  # the head's weights inside a training checkpoint's state_dict


class SegmenterLoadError(ValueError):
    """A file that is not a Segmenter (or a training checkpoint of one); the message is one line."""


class Segmenter(nn.Module):
    """Frozen CLIP + head + preprocessing + class prompts + background threshold (see the module docstring).

    kind: `synseg` (a FiLM-conditioned activation map per class, sigmoid), `mixreorg` (patch embeddings
    against class prompts, softmax over classes), `maskclip` or `naclip` (frozen dense tokens of the
    backbone's dense_mode against class prompts, softmax; no head). `threshold`: the val-selected
    background threshold, None when never selected."""

    def __init__(
        self,
        kind: str,
        backbone: dict[str, Any],
        head: dict[str, Any] | None = None,
        image_size: int | None = None,
        threshold: float | None = None,
        templates: Sequence[str] = ("a photo of a {}.",),
        text_condition: str = "unit",
        progressive: bool = True,
        temperature: float | None = None,
        eval_chunk: int = 256,
        protocol: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"segmenter kind: {kind!r}; expected one of {', '.join(KINDS)}")
        mode = backbone.get("dense_mode", "maskclip")  # FrozenCLIP's default
        if kind in TRAINING_FREE and mode != kind:
            raise ValueError(f"segmenter kind {kind} needs backbone.dense_mode={kind}, not {mode}")
        if text_condition not in ("unit", "raw"):
            raise ValueError(f"model.text_condition: {text_condition!r}; expected unit or raw")
        self.kind = kind
        self.backbone = FrozenCLIP(**backbone)
        b = self.backbone
        self.head = None
        if KINDS[kind] is not None:
            self.head = create_model(
                KINDS[kind],
                width=b.width,
                embed_dim=b.embed_dim,
                n_layers=len(b.extract_layers),
                patch_size=b.patch_size,
                **(head or {}),
            )
        self.config: dict[str, Any] = {
            "kind": kind,
            "backbone": dict(backbone),
            "head": dict(head or {}),
            "image_size": image_size,
            "threshold": threshold,
            "templates": list(templates),
            "text_condition": text_condition,
            "progressive": progressive,
            "temperature": temperature,
            "eval_chunk": eval_chunk,
            "protocol": dict(protocol or {}),
        }
        pre = self._preprocess_cfg(backbone)
        self.image_size = int(image_size or pre["size"][0])
        self.register_buffer("mean", torch.tensor(pre["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pre["std"]).view(1, 3, 1, 1), persistent=False)
        self.class_names: list[str] = []
        self.class_text: torch.Tensor | None = None  # (C, D) unit-norm class embeddings
        self.class_cond: torch.Tensor | None = None  # (C, D) what a SynSeg head is conditioned on
        # an evaluation protocol's softmax scale for training-free kinds (NACLIP: 40); never saved
        self.protocol_temperature: float | None = None

    @staticmethod
    def _preprocess_cfg(backbone: dict[str, Any]) -> dict[str, Any]:
        from synseg.clip_configs import preprocess_cfg

        return preprocess_cfg(backbone["model_name"], backbone.get("pretrained"))

    @property
    def threshold(self) -> float | None:
        return self.config["threshold"]

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        self.config["threshold"] = None if value is None else float(value)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    # ---- text --------------------------------------------------------------------------------------------
    def embed_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditioning, unit-norm) text embeddings (P, D) of prompts; conditioning is the raw CLIP text
        feature with `text_condition=raw` (CLIPSeg's FiLM was trained on those), else the unit one."""
        raw = self.backbone.encode_prompts(prompts, normalize=False).to(self.device)
        unit = F.normalize(raw, dim=-1)
        return (raw if self.config["text_condition"] == "raw" else unit), unit

    def set_classes(self, names: Sequence[str], templates: Sequence[str] | None = None) -> None:
        """The foreground classes that `scores` / `segment` use (label k = names[k - 1]), each embedded as
        the mean over `templates` (default: the model's own)."""
        names = [str(n).strip() for n in names]
        if not names or any(not n for n in names):
            raise ValueError(f"classes {names}: expected one or more non-empty class names")
        templates = list(templates or self.config["templates"])
        self.class_names = names
        # Not through the prompt cache: a prompt's embedding depends (in the last bits) on the batch it was
        # encoded in, so class embeddings are encoded together, fresh, whatever training cached before: a
        # run's own test, `make eval` of its checkpoint and of its export give the same numbers.
        self.class_text = self.backbone.encode_classnames(names, templates, cache=False).to(self.device)
        if self.config["text_condition"] == "raw":  # else the conditioning is the unit embedding itself
            self.class_cond = self.backbone.encode_classnames(
                names, templates, normalize=False, cache=False
            ).to(self.device)
        else:
            self.class_cond = self.class_text

    # ---- dense scores ------------------------------------------------------------------------------------
    def pair_maps(
        self, feats: dict, index: torch.Tensor, text: torch.Tensor, unit: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SynSeg: maps for P (image, text) pairs: image `index` (P,), conditioning text (P, D) (and its
        unit-norm version for the prior). Returns logits (P, 1, H, W) and projected features (P, N, D)."""
        prior = None
        if self.head.decoder.prior is not None:  # cosine of the frozen dense tokens with the text: (P, N)
            unit = F.normalize(text, dim=-1) if unit is None else unit
            prior = torch.einsum("pnd,pd->pn", F.normalize(feats["dense"][index], dim=-1), unit)
        return self.head(feats["layers"], text, feats["grid"], prior, index)

    def patch_embeddings(
        self, feats: dict, globals_: list[torch.Tensor], src: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MixReorg: patch embeddings (B', N, D) and the logit scale. `globals_`: (B, W) class tokens per
        layer of the unmixed images; `src` (B', N) maps patches to source images (None: each image is its
        own source). With progressive mixing each patch gets its source image's global token."""
        glob = None
        if self.config["progressive"]:
            n = feats["layers"][0].shape[1] - 1
            glob = [g[:, None].expand(-1, n, -1) if src is None else g[src] for g in globals_]
        return self.head(feats["layers"], glob)

    def _require_classes(self) -> None:
        if self.class_text is None:
            raise RuntimeError("Segmenter: call set_classes(names) before scores() / segment()")

    @torch.no_grad()
    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) -> (B, C, H, W) class scores in [0, 1] (sigmoid maps for SynSeg,
        a softmax over classes for MixReorg and MaskCLIP)."""
        self._require_classes()
        feats = self.backbone.encode_images(x)
        size = x.shape[-2:]
        if self.kind == "synseg":
            return self._synseg_maps(feats, x.shape[0], size)
        if self.kind == "mixreorg":
            z, scale = self.patch_embeddings(feats, [layer[:, 0] for layer in feats["layers"]])
            logits = scale * F.normalize(z, dim=-1) @ self.class_text.T  # (B, N, C)
        else:  # maskclip / naclip: frozen dense tokens (the backbone's dense_mode)
            scale = (
                self.protocol_temperature
                or self.config["temperature"]
                or float(self.backbone.clip.logit_scale.exp())
            )
            logits = scale * F.normalize(feats["dense"], dim=-1) @ self.class_text.T  # (B, N, C)
        b, _, c = logits.shape
        probs = logits.softmax(-1).transpose(1, 2).reshape(b, c, *feats["grid"])
        return F.interpolate(probs, size=size, mode="bilinear", align_corners=False)

    def _synseg_maps(self, feats: dict, b: int, size: tuple[int, int]) -> torch.Tensor:
        c = self.class_text.shape[0]
        index = torch.arange(b, device=self.device).repeat_interleave(c)
        text, unit = self.class_cond.repeat(b, 1), self.class_text.repeat(b, 1)
        out, step = [], int(self.config["eval_chunk"])
        for s in range(0, index.numel(), step):
            sl = slice(s, s + step)
            logits, _ = self.pair_maps(feats, index[sl], text[sl], unit[sl])
            out.append(torch.sigmoid(logits))
        maps = torch.cat(out)
        if maps.shape[-2:] != size:
            maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        return maps.view(b, c, *size)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] (B, 3, H, W) -> the backbone's normalised input."""
        return (images.to(self.device).float() - self.mean) / self.std

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] (B, 3, H, W), any size -> (B, C, H, W) per-class scores in [0, 1]. A size
        that is not a multiple of the patch is padded (bottom / right, with the mean colour) and cropped
        back."""
        h, w = images.shape[-2:]
        p = self.backbone.patch_size
        x = F.pad(self.normalize(images), (0, (-w) % p, 0, (-h) % p))  # 0 after normalising: the mean colour
        return self.class_scores(x)[..., :h, :w]

    @torch.no_grad()
    def segment(
        self, images: torch.Tensor, threshold: float | None = None, background: bool = True
    ) -> torch.Tensor:
        """Float images in [0, 1] (B, 3, H, W), any size -> (B, H, W) int64 labels: 0 background (where the
        best class score is not above the threshold), k the k-th class given to `set_classes`. Threshold:
        the argument, else the model's val-selected one; `background=False` (or no threshold at all) gives
        every pixel a class."""
        best, idx = self.scores(images).max(1)
        threshold = self.threshold if threshold is None else threshold
        if not background or threshold is None:
            return idx + 1
        return torch.where(best > threshold, idx + 1, torch.zeros_like(idx))

    # ---- files -------------------------------------------------------------------------------------------
    def head_state(self) -> dict[str, torch.Tensor]:
        return {
            k: v.detach().cpu().contiguous() for k, v in (self.head.state_dict() if self.head else {}).items()
        }

    def save(self, path: str | Path) -> Path:
        """Writes the exported format (atomically): the head's weights as safetensors, the config as JSON in
        the safetensors metadata."""
        import os
        import tempfile

        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file(self.head_state(), tmp, metadata={"format": FORMAT, "config": json.dumps(self.config)})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_config(
        cls, config: dict[str, Any], head_state: dict[str, torch.Tensor] | None = None
    ) -> Segmenter:
        """A Segmenter from its config (and head weights; missing or unexpected ones are an error)."""
        cfg = dict(config)
        seg = cls(cfg.pop("kind"), **cfg)
        if seg.head is not None:
            if head_state is None:
                raise SegmenterLoadError(f"a {seg.kind} Segmenter needs its head's weights; none were given")
            try:
                seg.head.load_state_dict(head_state)
            except RuntimeError as err:
                first = str(err).strip().splitlines()[0]
                raise SegmenterLoadError(f"the head's weights do not fit its config ({first})") from None
        return seg.eval()

    @classmethod
    def training_free(cls, kind: str, clip: dict[str, Any]) -> Segmenter:
        """A training-free Segmenter (`maskclip`, `naclip`: the backbone's dense mode of that name) on a
        backbone config (model_name, pretrained, image_size, extract_layers as in configs/clip)."""
        if kind not in TRAINING_FREE:
            raise SegmenterLoadError(
                f"{kind!r} is not training-free; expected one of {', '.join(TRAINING_FREE)}"
            )
        backbone = {"model_name": clip["model_name"], "pretrained": clip.get("pretrained")}
        backbone["dense_mode"] = kind
        if clip.get("extract_layers") is not None:
            backbone["extract_layers"] = list(clip["extract_layers"])
        config = {"kind": kind, "backbone": backbone, "image_size": clip.get("image_size")}
        return cls.from_config(resolve_paths(config, Path.cwd() / "model"))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Segmenter:
        """A Segmenter from an exported file (`save`) or a training checkpoint (last.ckpt / best.ckpt);
        SegmenterLoadError (one line) for anything else."""
        path = Path(path)
        if not path.is_file():
            raise SegmenterLoadError(
                f"{path}: no such file (expected an exported model or a run's last.ckpt)"
            )
        with path.open("rb") as f:
            head = f.read(8)
        # safetensors starts with the little-endian length of its JSON header; a torch zip starts with PK.
        if head[:2] != b"PK" and len(head) == 8 and 0 < int.from_bytes(head, "little") < 100_000_000:
            seg = cls._load_exported(path)
        else:
            seg = cls._load_training_checkpoint(path)
        return seg.to(device)

    @classmethod
    def _load_exported(cls, path: Path) -> Segmenter:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
        except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
            raise SegmenterLoadError(
                f"{path}: not a readable exported model ({type(err).__name__})"
            ) from None
        if meta.get("format") != FORMAT:
            raise SegmenterLoadError(f"{path}: format {meta.get('format')!r}; expected {FORMAT!r}")
        return cls.from_config(resolve_paths(json.loads(meta["config"]), path), state)

    @classmethod
    def _load_training_checkpoint(cls, path: Path) -> Segmenter:
        from synseg.checkpoint_files import load_checkpoint_file
        from synseg.errors import CheckpointError

        try:
            ckpt = load_checkpoint_file(path)
        except CheckpointError as err:
            raise SegmenterLoadError(str(err)) from None
        if not isinstance(ckpt, dict) or CKPT_KEY not in ckpt:
            raise SegmenterLoadError(
                f"{path}: not a checkpoint of a segmentation model (no {CKPT_KEY!r} entry; the stand-in CLIP "
                "and other non-segmenters cannot be loaded as one)"
            )
        state = {k[len(HEAD_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(HEAD_PREFIX)}
        return cls.from_config(resolve_paths(dict(ckpt[CKPT_KEY]), path), state or None)


def resolve_paths(config: dict[str, Any], source: Path) -> dict[str, Any]:
    """A local backbone weight file named relative to the project (as training wrote it) that does not exist
    from here is looked up relative to the project root of the file's run folder, then this package's root."""
    backbone = dict(config.get("backbone", {}))
    pretrained = backbone.get("pretrained")
    if (
        pretrained
        and Path(pretrained).suffix
        and not Path(pretrained).is_absolute()
        and not Path(pretrained).exists()
    ):
        roots = [*source.resolve().parents, Path(__file__).resolve().parents[3]]
        for root in roots:
            if (root / pretrained).exists():
                backbone["pretrained"] = str(root / pretrained)
                break
        else:
            raise SegmenterLoadError(
                f"{source}: backbone weights {pretrained} not found "
                "(build the stand-in CLIP with `make toyclip`)"
            )
    return {**config, "backbone": backbone}
