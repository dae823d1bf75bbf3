"""Caption -> categories cache of :class:`synseg.data.train.tagging.CategoryTagger`.

An in-memory dict in front of an optional sqlite file ``cache_dir/tags-{config_key}.sqlite``. The file is
opened in WAL mode with a busy timeout, so several DataLoader worker processes can read and write it at the
same time; writes are batched (one transaction per :meth:`TagCache.flush`). The connection is opened lazily
per process (checked with ``os.getpid()``), so the cache can be pickled into workers (fork or spawn).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import Iterable, Sequence
from multiprocessing import util as mp_util
from pathlib import Path

log = logging.getLogger("synseg.data.train.tagging")

_SEP = "\x1f"  # unit separator: never inside a category phrase
_SQL_CHUNK = 500  # captions per SELECT ... IN (...)


class TagCache:
    """Memory dict + optional on-disk sqlite store, keyed by (config_key, caption)."""

    def __init__(
        self,
        config_key: str,
        cache_dir: str | Path | None = None,
        max_memory_entries: int = 500_000,
        flush_every: int = 256,
        flush_seconds: float = 5.0,
    ) -> None:
        self.config_key = config_key
        self.path = None if cache_dir is None else Path(cache_dir) / f"tags-{config_key}.sqlite"
        self.max_memory_entries = max_memory_entries
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.hits = 0
        self.misses = 0
        self._memory: dict[str, list[str]] = {}
        self._pending: dict[str, str] = {}  # disk key -> encoded categories, not yet written
        self._last_flush = time.monotonic()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None

    # --- pickling: no connection, no pending writes in the copy
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_conn=None, _pid=None, _pending={}, _memory={}, hits=0, misses=0)
        return state

    def disk_key(self, caption: str) -> str:
        """Hex sha1 of (config_key, caption)."""
        return hashlib.sha1(f"{self.config_key}\0{caption}".encode()).hexdigest()

    def _connection(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS tags (key TEXT PRIMARY KEY, cats TEXT NOT NULL)")
            self._conn, self._pid, self._pending = conn, os.getpid(), {}
            # flush at exit, also in multiprocessing workers (they skip atexit); weak: no leak
            mp_util.Finalize(None, _flush_ref, args=(weakref.ref(self),), exitpriority=10)
        return self._conn

    def get_many(self, captions: Sequence[str]) -> list[list[str] | None]:
        """Cached categories of each caption, or None where unknown; counts hits and misses."""
        out: list[list[str] | None] = [self._memory.get(c) for c in captions]
        missing = [i for i, r in enumerate(out) if r is None]
        conn = self._connection() if missing else None
        if conn is not None:
            keys = {self.disk_key(captions[i]): i for i in missing}
            key_list = list(keys)
            for start in range(0, len(key_list), _SQL_CHUNK):
                chunk = key_list[start : start + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT key, cats FROM tags WHERE key IN ({marks})", chunk).fetchall()
                for key, cats in rows:
                    i = keys[key]
                    out[i] = cats.split(_SEP) if cats else []
                    self._remember(captions[i], out[i])
            for key, i in keys.items():  # written by this process, not yet flushed
                if out[i] is None and key in self._pending:
                    cats = self._pending[key]
                    out[i] = cats.split(_SEP) if cats else []
        n_miss = sum(r is None for r in out)
        self.misses += n_miss
        self.hits += len(out) - n_miss
        return [None if r is None else list(r) for r in out]

    def put_many(self, captions: Iterable[str], categories: Iterable[list[str]]) -> None:
        """Remember results; disk writes are queued and flushed in batches."""
        disk = self._connection() is not None  # (re)opened first: drops a parent's queue after fork
        for caption, cats in zip(captions, categories, strict=True):
            self._remember(caption, cats)
            if disk:
                self._pending[self.disk_key(caption)] = _SEP.join(cats)
        if disk and (
            len(self._pending) >= self.flush_every or time.monotonic() - self._last_flush > self.flush_seconds
        ):
            self.flush()

    def _remember(self, caption: str, cats: list[str]) -> None:
        if len(self._memory) >= self.max_memory_entries:
            self._memory.pop(next(iter(self._memory)))  # oldest first
        self._memory[caption] = list(cats)

    def flush(self) -> None:
        """Write queued results to disk in one transaction (no-op without a cache_dir)."""
        self._last_flush = time.monotonic()
        conn = self._connection() if self._pending else None
        if conn is None or not self._pending:
            return
        items = list(self._pending.items())
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR REPLACE INTO tags (key, cats) VALUES (?, ?)", items)
            conn.execute("COMMIT")
        except sqlite3.Error as err:  # a cache must never break training
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.warning("tag cache: could not write %d entries to %s: %s", len(items), self.path, err)
            return
        self._pending = {}

    def close(self) -> None:
        """Flush and close the connection of this process."""
        self.flush()
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn, self._pid = None, None

    @property
    def stats(self) -> dict:
        return {"hits": self.hits, "misses": self.misses}


def _flush_ref(ref: weakref.ref) -> None:
    cache = ref()
    if cache is not None:
        cache.flush()
