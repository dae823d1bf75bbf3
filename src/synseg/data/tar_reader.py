"""Reads webdataset-style tar shards (`KEY.jpg`, `KEY.txt`, ...) as raw records, tolerating broken tars."""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


def split_member_name(name: str) -> tuple[str, str] | None:
    """("dir/000001", "jpg") for "dir/000001.jpg"; the extension is everything after the first dot of the
    file name, as in webdataset; None for names without an extension or hidden files."""
    directory, _, base = name.rpartition("/")
    if base.startswith(".") or "." not in base:
        return None
    stem, ext = base.split(".", 1)
    return (f"{directory}/{stem}" if directory else stem), ext.lower()


def iter_tar_records(path: str) -> Iterator[dict[str, Any]]:
    """Yields {"__key__", "__url__", ext: bytes, ...} per sample, grouping adjacent members by key.

    A truncated or unreadable tar ends its own iteration with a logged warning (the samples read so far are
    kept); the caller counts it as a broken shard."""
    current: dict[str, Any] = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = split_member_name(member.name)
                if parts is None:
                    continue
                key, ext = parts
                if current and current["__key__"] != key:
                    yield current
                    current = {}
                fobj = tar.extractfile(member)
                current.setdefault("__key__", key)
                current["__url__"] = path
                current[ext] = fobj.read() if fobj is not None else None
    except (tarfile.TarError, OSError, EOFError) as err:
        log.warning("shard %s is broken after %s: %s", path, current.get("__key__", "start"), err)
        raise BrokenShardError(path) from err  # the sample being read may be partial: dropped
    if current:
        yield current


class BrokenShardError(RuntimeError):
    """A shard that could not be read to its end."""
