"""Checks of a composed training config before anything is built or written: every bad value is one
`ConfigError` line naming the key, the value and what is expected (no traceback, nothing started)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synseg.errors import ConfigError

LOSS_TERMS = {"synseg": ("align", "cont", "back", "sep"), "mixreorg": ("seg", "orig", "rest")}
WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


def _get(cfg: Mapping, dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _int_at_least(cfg: Mapping, key: str, low: int, hint: str = "") -> None:
    value = _get(cfg, key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key}: {value!r}; expected an integer >= {low}{hint}")


def _number_in(cfg: Mapping, key: str, low: float, high: float, open_low: bool = False) -> None:
    value = _get(cfg, key)
    if value is None:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and value <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise ConfigError(f"{key}: {value!r}; expected a number in {bracket}{low:g}, {high:g}]")


def world_size(cfg: Mapping) -> int:
    """Processes of the configured trainer (devices x nodes; 1 for 'auto' or a list of devices)."""
    devices = _get(cfg, "trainer.devices", 1)
    per_node = len(devices) if isinstance(devices, list) else (devices if isinstance(devices, int) else 1)
    return max(1, per_node) * max(1, int(_get(cfg, "trainer.num_nodes", 1) or 1))


def check_loss_weights(cfg: Mapping) -> None:
    """model.loss.weights: one named weight per term of the model's loss (e.g. model.loss.weights.sep=0)."""
    target = str(_get(cfg, "model._target_", ""))
    family = next((f for f in LOSS_TERMS if target.lower().endswith(f"{f}module")), None)
    weights = _get(cfg, "model.loss.weights")
    if family is None or weights is None:
        return
    terms = LOSS_TERMS[family]
    if not isinstance(weights, Mapping) or set(weights) != set(terms):
        given = dict(weights) if isinstance(weights, Mapping) else weights
        raise ConfigError(
            f"model.loss.weights: {given}; expected one weight per term, named {', '.join(terms)} "
            f"(e.g. model.loss.weights.{terms[-1]}=0)"
        )
    values = [weights[t] for t in terms]
    bad = [w for w in values if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w)]
    if bad or any(w < 0 for w in values):
        raise ConfigError(f"model.loss.weights: {dict(weights)}; expected finite numbers >= 0")
    clamp = _get(cfg, "model.loss.clamp")
    if clamp is not None and not (len(clamp) == 2 and 0 < clamp[0] < clamp[1] < 1):
        raise ConfigError(f"model.loss.clamp: {list(clamp)}; expected [lo, hi] with 0 < lo < hi < 1")


def check_weight_files(cfg: Mapping) -> None:
    """Local weight files the model needs must exist (hub tags such as `openai` are not checked here)."""
    checks = [("model.segmenter.backbone.pretrained", "build the stand-in CLIP with `make toyclip`")]
    if _get(cfg, "model.decoder_init") == "clipseg":
        checks.append(("model.decoder_ckpt", "build the stand-in decoder with `make dense-decoder`"))
    for key, hint in checks:
        value = _get(cfg, key)
        if isinstance(value, str) and value.endswith(WEIGHT_FILE_SUFFIXES) and not Path(value).is_file():
            raise ConfigError(f"{key}: {value} does not exist; {hint}")


def validate_train_config(cfg: Mapping) -> None:
    """Raises ConfigError for the first bad value of a composed (resolved) training config."""
    _int_at_least(cfg, "total_steps", 1)
    _int_at_least(cfg, "data.batch_size", 1, " (images per process and step)")
    _int_at_least(cfg, "data.num_workers", 0)
    _int_at_least(cfg, "data.eval_batch_size", 1)
    _int_at_least(cfg, "model.warmup_steps", 0)
    interval = _get(cfg, "trainer.val_check_interval")
    if isinstance(interval, int) and not isinstance(interval, bool):
        _int_at_least(cfg, "trainer.val_check_interval", 1, " steps")
    _number_in(cfg, "model.optimizer.lr", 0.0, 10.0, open_low=True)
    _number_in(cfg, "model.optimizer.weight_decay", 0.0, 10.0)
    for key in ("callbacks.seg_eval.threshold", "protocol.threshold", "protocol.default_threshold"):
        _number_in(cfg, key, 0.0, 1.0)
    for name, value in (_get(cfg, "protocol.thresholds", {}) or {}).items():
        if value is not None:
            _number_in(cfg, f"protocol.thresholds.{name}", 0.0, 1.0)
    if _get(cfg, "resume") not in (None, False, True, "false", "true", "auto"):
        raise ConfigError(f"resume: {_get(cfg, 'resume')!r}; expected false, true or auto (RESUME=1: true)")
    check_loss_weights(cfg)
    group = _get(cfg, "model.group_size")
    batch = _get(cfg, "data.batch_size")
    if isinstance(group, int) and isinstance(batch, int) and batch < group:
        raise ConfigError(
            f"data.batch_size: {batch} images per process cannot fill one mixing group of "
            f"model.group_size={group}; expected data.batch_size >= {group} "
            f"(with {world_size(cfg)} processes)"
        )
    check_weight_files(cfg)
