"""Reads one webdataset tar shard (`KEY.jpg`, `KEY.txt`, ...) as raw records, strictly and resumably.

Opening uses webdataset's `gopen` (local paths, `file:`, `pipe:CMD`, `http(s)://` through curl, `hf://`,
...), member names are split with webdataset's `base_plus_ext` (key = path up to the first dot of the file
name, lower-cased extension = the rest). The tar iteration is our own: Python's `tarfile` in stream mode, as
used by webdataset's `tar_file_iterator` and by `datasets`, treats a short, empty or invalid header after
offset 0 as the end of the archive, so a shard cut inside a header would end quietly. `StrictTarInfo`
turns those into errors (a real all-zero end block still ends the archive), so every cut is seen: the
samples before it are kept, the sample being read is dropped (`sample_partial`) and the shard is counted as
`shard_broken`. Records are numbered within the shard so that a resumed stream can skip to record `start`
without reading member data (only headers and the bytes in between flow through)."""

from __future__ import annotations

import logging
import re
import tarfile
import zlib
from collections.abc import Iterator
from typing import Any

from webdataset.gopen import gopen
from webdataset.tariterators import base_plus_ext

from synseg.data.train.records import SkipCounter

log = logging.getLogger(__name__)
_META = re.compile(r"(^|/)__[^/]*__($|/)")  # webdataset's metadata members (__key__, __url__ ...)
READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, ValueError)


class StrictTarInfo(tarfile.TarInfo):
    """A TarInfo whose headers fail loudly: an empty, truncated or invalid header raises
    `SubsequentHeaderError` (tarfile then raises ReadError) instead of ending the archive."""

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError, tarfile.InvalidHeaderError) as err:
            raise tarfile.SubsequentHeaderError(f"{err} (shard truncated or corrupt)") from None


def _close(stream: Any) -> str | None:
    """Closes a gopen stream; the error text when a pipe / download ended with a failure status."""
    try:
        stream.close()
    except Exception as err:  # webdataset's Pipe raises IOError for a bad exit status
        return f"{type(err).__name__}: {err}"
    return None


def iter_shard(
    url: str, skips: SkipCounter, start: int = 0, keys_only: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, record) for the records of one shard from record `start` on; a record is
    {"__key__", "__url__", ext: bytes, ...} (only the first two with `keys_only`). Broken, truncated and
    empty shards are counted, never raised."""
    try:
        stream = gopen(url, "rb")
    except Exception as err:
        skips.skip("shard_broken", url, f"(cannot open: {type(err).__name__}: {err})")
        return
    yield from iter_tar_stream(stream, url, skips, start, keys_only)


def iter_tar_stream(
    stream: Any, url: str, skips: SkipCounter, start: int = 0, keys_only: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """`iter_shard` on an opened binary stream (closed at the end); `url` names it in records and counts."""
    index = 0  # index of the record being assembled
    current: dict[str, Any] | None = None
    error: str | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|*", tarinfo=StrictTarInfo) as tar:
            for member in tar:
                if not member.isreg() or _META.search(member.name):
                    continue
                key, ext = base_plus_ext(member.name)
                if key is None:
                    continue
                if current is not None and key != current["__key__"]:
                    if index >= start:
                        yield index, current
                    index, current = index + 1, None
                if current is None:
                    current = {"__key__": key, "__url__": url}
                if index < start or keys_only:
                    continue  # member data is skipped by tarfile, not read into memory
                ext = ext.lower()
                fobj = tar.extractfile(member)
                data = fobj.read() if fobj is not None else b""
                if ext in current:
                    skips.skip("member_duplicate", f"{url}:{member.name}")
                    continue
                current[ext] = data
    except READ_ERRORS as err:
        error = f"{type(err).__name__}: {err}"
    finally:
        closed = _close(stream)
    error = error or closed
    if error is not None:
        if current is not None and index >= start:
            skips.skip("sample_partial", f"{url}:{current['__key__']}", "(its shard broke off)")
        skips.skip("shard_broken", url, f"after record {index} ({error})")
        return
    if current is not None:
        if index >= start:
            yield index, current
    elif start == 0:
        skips.skip("shard_empty", url)


def shard_keys(url: str, skips: SkipCounter) -> list[str]:
    """The keys of the complete records of a shard (the audit's inventory)."""
    return [rec["__key__"] for _, rec in iter_shard(url, skips, keys_only=True)]
