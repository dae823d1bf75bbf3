"""The output side shared by the benchmark converters: one error type for bad input, a refusal to overwrite,
atomic PNG writes and a progress bar on stderr."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

T = TypeVar("T")


class ConversionError(Exception):
    """Bad converter input or refused output; the CLI prints it as one line and exits non-zero."""


def check_free(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse (before writing anything) when outputs exist, unless `overwrite`."""
    if overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise ConversionError(f"{existing[0]}{more}: output exists; pass --overwrite to replace it")


def partial_note(written: int) -> str:
    """Tail for an error met after some outputs were written (a rerun then needs --overwrite)."""
    return (
        f" ({written} mask(s) already written; fix the input and rerun with --overwrite)" if written else ""
    )


def write_png(path: Path, labels: np.ndarray) -> None:
    """Save a (H, W) uint8 label map as a grey PNG (value = label) via a temporary file, so a killed run
    never leaves a half-written mask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8)).save(tmp, format="PNG")
    os.replace(tmp, path)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def progress(items: Sequence[T], description: str, quiet: bool = False) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr (none when `quiet`)."""
    if quiet:
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    yield from track(items, description=description, total=len(items), console=Console(stderr=True))
