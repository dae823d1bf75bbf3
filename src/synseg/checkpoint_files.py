"""Checkpoint files that survive a kill and load safely.

`atomic_torch_save` writes to a temporary file in the destination folder, fsyncs it, renames it over the
destination and fsyncs the folder: a reader sees the old file or the new one, never half of one. Everything
the project writes holds plain containers and tensors only (`plain_checkpoint` turns config objects into
dicts), so `load_checkpoint_file` loads with `weights_only=True`; a file that needs more (arbitrary pickled
objects, which could run code) is refused with one line. No Lightning import here: inference uses it too."""

from __future__ import annotations

import functools
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from synseg.errors import CheckpointError


def plain_checkpoint(obj: Any) -> Any:
    """A copy of `obj` that `torch.load(weights_only=True)` accepts: OmegaConf containers become dicts and
    lists, a `functools.partial` (Hydra `_partial_`) becomes {"_target_": "module.name", **keywords}."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, DictConfig | ListConfig):
            return plain_checkpoint(OmegaConf.to_container(obj, resolve=True))
    except ImportError:  # pragma: no cover - omegaconf ships with the training stack
        pass
    if isinstance(obj, functools.partial):
        target = f"{obj.func.__module__}.{getattr(obj.func, '__qualname__', obj.func)}"
        return {"_target_": target, **plain_checkpoint(dict(obj.keywords))}
    if isinstance(obj, dict):
        return {k: plain_checkpoint(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        items = [plain_checkpoint(v) for v in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    return obj


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save(obj, path)` atomically: temporary file in the same folder, fsync, rename, fsync folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a checkpoint gets the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu", what: str = "CKPT") -> Any:
    """`torch.load(path, weights_only=True)`, or a CheckpointError of one line: missing, unreadable
    (truncated, not a checkpoint) or unsafe (it needs arbitrary objects unpickled, which can run code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what}={path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        # torch words it "Unsupported global: GLOBAL x.y ..." or "... unsupported GLOBAL x.y whose module ..."
        unsafe = next((ln.strip() for ln in text.splitlines() if "GLOBAL " in ln), None)
        if unsafe is not None:  # a pickled global outside torch's weights-only allow-list
            raise CheckpointError(
                f"{what}={path}: refused: loading it needs arbitrary Python objects unpickled ({unsafe}), "
                "which can run code; only weights-only checkpoints (tensors and plain containers) are loaded"
            ) from None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        after = [i for i, ln in enumerate(lines) if "WeightsUnpickler error" in ln]
        detail = lines[after[0] + 1] if after and after[0] + 1 < len(lines) else type(err).__name__
        raise CheckpointError(f"{what}={path}: not a readable checkpoint ({detail})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{what}={path}: not a readable checkpoint ({type(err).__name__}: {first})"
        ) from None
