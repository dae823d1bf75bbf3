"""The zero-shot evaluation protocol as data (docs/eval-protocol.md): resolution, sliding window, prompt
templates, background thresholds and PAMR, resolved per dataset and rendered next to every number.

Defaults follow GroupViT / TCL: short side 448, window 448, stride 224, "a photo of a {}.", thresholds
VOC 0.95 / Context 0.35 / COCO 0.95 on the with-background sets, PAMR off (TCL: 10 iterations, dilations
1, 2, 4, 8, 12, 24). `toy` and `folder` default to the resolution the model was trained at."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

SIMPLE_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)
# CLIP's prompt-engineering notebook: the 7-template subset selected on ImageNet.
IMAGENET7_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {"simple": SIMPLE_TEMPLATES, "imagenet7": IMAGENET7_TEMPLATES}
# GroupViT's background thresholds for the with-background sets.
GROUPVIT_THRESHOLDS: dict[str, float] = {"voc21": 0.95, "context60": 0.35, "coco_object": 0.95}
MODEL_RESOLUTION_SETS: tuple[str, ...] = ("toy", "folder")  # default to the model's training image size
PAMR_DILATIONS: tuple[int, ...] = (1, 2, 4, 8, 12, 24)


@dataclass(frozen=True)
class PamrSpec:
    """PAMR refinement of the foreground score maps (per window, before the background channel)."""

    iterations: int = 10
    dilations: tuple[int, ...] = PAMR_DILATIONS


@dataclass(frozen=True)
class Protocol:
    """Everything that decides a zero-shot number on one dataset."""

    dataset: str
    short_side: int = 448
    window: int = 448
    stride: int = 224
    template_set: str = "simple"
    templates: tuple[str, ...] = SIMPLE_TEMPLATES
    has_background: bool = True
    threshold: float | None = None  # None: no background channel (no-background sets)
    threshold_source: str = "config"  # config | checkpoint (val-selected) | default
    pamr: PamrSpec | None = None
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
            else (f"{self.pamr.iterations} it, dilations {','.join(map(str, self.pamr.dilations))}")
        )
        parts = [
            f"short side {self.short_side}",
            f"window {self.window} stride {self.stride}",
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
        )
    return Protocol(
        dataset=dataset,
        short_side=short,
        window=window,
        stride=stride,
        template_set=name,
        templates=templates,
        has_background=has_background,
        threshold=threshold,
        threshold_source=source,
        pamr=pamr,
        notes=tuple(notes),
    )
