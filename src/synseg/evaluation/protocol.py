"""The zero-shot evaluation protocol as data (docs/eval-protocol.md): resolution, sliding window, prompt
templates, background rule and PAMR, resolved per dataset and rendered next to every number.

Defaults follow GroupViT: short side 448 (long side at most 2048), window 448, stride 224, "a photo of a
{}.", background below min(threshold, the image's best score) with VOC 0.95 / Context 0.35 / COCO 0.95,
PAMR off. The `tcl` and `naclip` presets (configs/protocol/) follow those peers. `toy` and `folder` default
to the resolution the model was trained at."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

SIMPLE_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)
# CLIP's prompt-engineering notebook: the 7-template subset selected on ImageNet.
IMAGENET7_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of a {}.",  # GroupViT's and TCL's wording
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
# TCL's `custom` set: the 7-template subset plus two plural forms.
TCL9_TEMPLATES: tuple[str, ...] = (*IMAGENET7_TEMPLATES, "a photo of many {}.", "a photo of {}s.")


def _openai80() -> tuple[str, ...]:
    """CLIP's 80 ImageNet templates (NACLIP's prompts), from open_clip's copy of OpenAI's list."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "simple": SIMPLE_TEMPLATES,
    "imagenet7": IMAGENET7_TEMPLATES,
    "tcl9": TCL9_TEMPLATES,
    "openai80": _openai80(),
}
BACKGROUND_RULES = ("threshold", "clamp", "words")
# GroupViT's background thresholds for the with-background sets.
GROUPVIT_THRESHOLDS: dict[str, float] = {"voc21": 0.95, "context60": 0.35, "coco_object": 0.95}
# These sets default to the model's training image size (short side = window).
MODEL_RESOLUTION_SETS: tuple[str, ...] = ("toy", "toy_dev", "toy_ood", "folder")
PAMR_DILATIONS: tuple[int, ...] = (1, 2, 4, 8, 12, 24)
# Sets evaluated at the threshold val selected on another set (the toy world's dev and ood splits: toy's).
TOY_THRESHOLD_FROM: dict[str, str] = {"toy_dev": "toy", "toy_ood": "toy"}


@dataclass(frozen=True)
class PamrSpec:
    """PAMR refinement of the score maps, before the background decision. `at`: `window` (each window's
    scores at window size), `output` (TCL: each window at window / output_stride, the crop resized down to
    it, then upsampled) or `image` (NACLIP: the stitched scores at the image's native size)."""

    iterations: int = 10
    dilations: tuple[int, ...] = PAMR_DILATIONS
    at: str = "window"
    output_stride: int = 4

    def __post_init__(self) -> None:
        if self.at not in ("window", "output", "image"):
            raise ValueError(f"protocol.pamr_at {self.at!r}: expected window, output or image")
        if self.output_stride < 1:
            raise ValueError(f"protocol.pamr_output_stride {self.output_stride}: expected >= 1")


@dataclass(frozen=True)
class Protocol:
    """Everything that decides a zero-shot number on one dataset."""

    dataset: str
    short_side: int = 448
    window: int = 448
    stride: int = 224
    long_side_max: int | None = None  # resize cap: scale = min(short / short side, cap / long side)
    slide: bool = True  # False: the whole resized image in one forward (NACLIP on VOC)
    template_set: str = "simple"
    templates: tuple[str, ...] = SIMPLE_TEMPLATES
    has_background: bool = True
    threshold: float | None = None  # None: no background channel (no-background sets)
    threshold_source: str = "config"  # config | checkpoint (val-selected) | default
    pamr: PamrSpec | None = None
    background: str = "threshold"  # threshold | clamp (GroupViT) | words (NACLIP); see `background_rule`
    background_words: tuple[str, ...] = ()  # words: the queries scored as background
    logit_scale: float | None = None  # training-free models: softmax(logit_scale * cosine) over queries
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if min(self.short_side, self.window) < 1:
            raise ValueError(f"protocol: short_side {self.short_side} / window {self.window}: expected >= 1")
        if not 1 <= self.stride <= self.window:
            raise ValueError(f"protocol.stride {self.stride}: expected 1..window ({self.window})")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError(f"protocol templates {list(self.templates)}: expected each to contain '{{}}'")
        if self.has_background and self.threshold is None:
            raise ValueError(f"{self.dataset}: a with-background set needs a threshold")
        if self.background not in BACKGROUND_RULES:
            raise ValueError(
                f"protocol background rule {self.background!r}: expected one of {BACKGROUND_RULES}"
            )
        if (self.background == "words") != bool(self.background_words):
            raise ValueError(
                f"{self.dataset}: background words {self.background_words} with rule {self.background}"
            )
        if self.long_side_max is not None and self.long_side_max < self.short_side:
            raise ValueError(f"protocol.long_side_max {self.long_side_max}: expected >= short side")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (stored as protocol.json beside the metrics)."""
        out = asdict(self)
        out["line"] = self.describe()
        return out

    def describe(self, multiline: bool = False) -> str:
        """The protocol in one line (or one item per line), printed next to every number."""
        thr = (
            "none (no background)"
            if self.threshold is None
            else f"{self.threshold:g} ({self.threshold_source})"
        )
        pamr = (
            "off"
            if self.pamr is None
            else (
                f"{self.pamr.iterations} it, dilations {','.join(map(str, self.pamr.dilations))}, at "
                + (f"window/{self.pamr.output_stride}" if self.pamr.at == "output" else self.pamr.at)
            )
        )
        if self.background == "clamp":
            thr = f"below min({thr}, image max)"
        elif self.background == "words":
            thr = f"{len(self.background_words)} background words, max prob below {thr}"
        cap = f" (long side <= {self.long_side_max})" if self.long_side_max else ""
        parts = [
            f"short side {self.short_side}{cap}",
            f"window {self.window} stride {self.stride}" if self.slide else "whole image",
            *([f"softmax(logit scale {self.logit_scale:g})"] if self.logit_scale else []),
            f"templates {self.template_set} ({len(self.templates)})",
            f"bg threshold {thr}",
            f"PAMR {pamr}",
            *self.notes,
        ]
        return ("\n".join(f"  {p}" for p in parts)) if multiline else " | ".join(parts)


def template_set(name: str, custom: Sequence[str] | None = None) -> tuple[str, ...]:
    """Templates of a named set (`simple`, `imagenet7`) or the given `custom` list."""
    if name == "custom":
        if not custom:
            raise ValueError("protocol.templates=custom: set protocol.custom_templates to a non-empty list")
        return tuple(custom)
    if name not in TEMPLATE_SETS:
        raise ValueError(
            f"protocol.templates: {name!r}; expected one of {', '.join([*TEMPLATE_SETS, 'custom'])}"
        )
    return TEMPLATE_SETS[name]


def resolve_threshold(
    dataset: str,
    thresholds: Mapping[str, float | None],
    override: float | None = None,
    checkpoint_threshold: float | None = None,
    default: float = 0.5,
) -> tuple[float, str]:
    """(threshold, source) for a with-background set: a global override, else the per-dataset table, else
    (table value null) the checkpoint's val-selected threshold, else `default`."""
    if override is not None:
        return float(override), "config"
    value = thresholds.get(dataset)
    if value is not None:
        return float(value), "config"
    if checkpoint_threshold is not None and not math.isnan(float(checkpoint_threshold)):
        return float(checkpoint_threshold), "checkpoint val-selected"
    return float(default), "default"


def background_rule(
    dataset: str, has_background: bool, cfg: Mapping[str, Any]
) -> tuple[str, tuple[str, ...]]:
    """(rule, background words) of a dataset: `words` where `background_words` lists it (NACLIP: background
    as a class of words), `clamp` where `clamp_sets` does (GroupViT: background below min(threshold, the
    image's best score)), else `threshold` (a constant channel: background where no class beats it)."""
    if not has_background:
        return "threshold", ()
    words = tuple(str(w) for w in (cfg.get("background_words") or {}).get(dataset) or ())
    if words:
        return "words", words
    return ("clamp" if dataset in tuple(cfg.get("clamp_sets") or ()) else "threshold"), ()


def build_protocol(
    dataset: str,
    has_background: bool,
    cfg: Mapping[str, Any],
    model_image_size: int | None = None,
    checkpoint_threshold: float | None = None,
) -> Protocol:
    """The protocol of one dataset from the `protocol` config node (see configs/eval.yaml).

    `model_image_size` (the training size of a checkpoint, or the backbone's input size for a training-free
    model) sets short side = window (stride window/2) on `toy` / `folder` unless `protocol.resolution` is
    set; `checkpoint_threshold` is used where the threshold table says null (toy by default)."""
    short, window, stride = int(cfg.get("short_side", 448)), int(cfg.get("window", 448)), cfg.get("stride")
    short = int(
        (cfg.get("short_sides") or {}).get(dataset, short)
    )  # per-dataset short side (NACLIP: city 560)
    cap = cfg.get("long_side_max")
    slide = dataset not in tuple(cfg.get("whole_image_sets") or ())
    notes: list[str] = []
    if dataset in tuple(cfg.get("model_resolution_sets", MODEL_RESOLUTION_SETS)):
        size = cfg.get("resolution") or model_image_size
        if size:
            short = window = int(size)
            stride = None
            notes.append("resolution: " + ("config" if cfg.get("resolution") else "model training size"))
    stride = int(stride) if stride else max(1, window // 2)
    name = str(cfg.get("templates", "simple"))
    templates = template_set(name, cfg.get("custom_templates"))
    threshold, source = None, "none"
    if has_background:
        threshold, source = resolve_threshold(
            dataset,
            dict(cfg.get("thresholds", GROUPVIT_THRESHOLDS)),
            cfg.get("threshold"),
            checkpoint_threshold,
            float(cfg.get("default_threshold", 0.5)),
        )
    pamr = None
    if cfg.get("pamr", False):
        pamr = PamrSpec(
            int(cfg.get("pamr_iterations", 10)),
            tuple(int(d) for d in cfg.get("pamr_dilations", PAMR_DILATIONS)),
            str(cfg.get("pamr_at", "window")),
            int(cfg.get("pamr_output_stride", 4)),
        )
    rule, words = background_rule(dataset, has_background, cfg)
    scale = cfg.get("logit_scale")
    return Protocol(
        dataset=dataset,
        short_side=short,
        window=window,
        stride=stride,
        long_side_max=int(cap) if cap else None,
        slide=slide,
        background=rule,
        background_words=words,
        logit_scale=float(scale) if scale else None,
        template_set=name,
        templates=templates,
        has_background=has_background,
        threshold=threshold,
        threshold_source=source,
        pamr=pamr,
        notes=tuple(notes),
    )
