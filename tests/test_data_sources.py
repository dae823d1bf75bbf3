"""Shard sources on webdataset's gopen / url expansion: local globs and brace ranges, pipe: and http(s)://
URLs, weighted mixes, resampling, more slots than shards, the HF `datasets` path on local shards."""

from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synseg.data.train.records import SkipCounter, decode_record
from synseg.data.train.shard_reader import iter_shard
from synseg.data.train.sources import ShardSource, expand_urls
from synseg.errors import ConfigError


def _jpeg(color: int = 128, size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), color, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def good_shard(path: Path, keys: list[str]) -> Path:
    """A shard of good samples KEY.jpg + KEY.txt ("caption KEY")."""
    members = []
    for i, key in enumerate(keys):
        members += [(f"{key}.jpg", _jpeg(i % 250)), (f"{key}.txt", f"caption {key}".encode())]
    return write_tar(path, members)


@pytest.fixture()
def corrupt_shard(tmp_path: Path) -> Path:
    """7 samples: 2 good and one of each corruption kind."""
    return write_tar(
        tmp_path / "bad-000000.tar",
        [
            ("000.jpg", _jpeg()),
            ("000.txt", b"a red disc"),
            ("001.jpg", b"not a jpeg at all"),
            ("001.txt", b"a blue box"),  # undecodable image
            ("002.jpg", _jpeg()),
            ("002.txt", "caf\xe9 dog".encode("latin-1")),  # non-UTF-8 caption
            ("003.jpg", _jpeg()),
            ("003.txt", b"   "),  # empty caption
            ("006.jpg", _jpeg(10)),
            ("006.txt", "a green star \u2605".encode()),
            # datasets infers the fields from the first 5 samples, so samples with a missing field come later
            ("004.jpg", _jpeg()),  # missing caption
            ("005.txt", b"a caption without image"),  # missing image
        ],
    )


def lane_keys(src, rank: int, world: int, lane: int, n_lanes: int, n: int) -> list[str]:
    """The first n record keys of a lane (every record counted as usable, as a decoder would)."""
    lane_ = src.lane(rank, world, lane, n_lanes, None, SkipCounter())
    keys = []
    for rec in islice(iter(lane_), n):
        keys.append(rec["__key__"])
        lane_.used()
    return keys


def test_shard_reader_groups_members_by_key(toy_shards: Path) -> None:
    shards = expand_urls(str(toy_shards / "*.tar"))
    assert len(shards) == 8
    records = [r for s in shards for _, r in iter_shard(s, SkipCounter())]
    assert len(records) == 48 and len({r["__key__"] for r in records}) == 48
    assert all({"jpg", "txt", "json", "__url__"} <= set(r) for r in records)
    # start=k skips the first k records without reading their data
    tail = [(i, r["__key__"]) for i, r in iter_shard(shards[0], SkipCounter(), start=4)]
    assert tail == [(4, "000000004"), (5, "000000005")]


def test_shard_round_trip_through_hf_datasets_streaming(toy_shards: Path) -> None:
    """The same shards read by `datasets.load_dataset("webdataset", streaming=True)` and by our reader."""
    import datasets

    from synseg.data.train.hf_source import _keep_raw_fields

    _keep_raw_fields()
    files = sorted(str(p) for p in toy_shards.glob("*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train", streaming=True)
    hf = {ex["__key__"]: ex for ex in ds.decode(False)}
    ours = {r["__key__"]: r for f in files for _, r in iter_shard(f, SkipCounter())}
    assert set(hf) == set(ours) and len(ours) == 48
    for key, rec in ours.items():
        assert hf[key]["txt"] == rec["txt"]
        assert hf[key]["jpg"]["bytes"] == rec["jpg"]
    image, caption = decode_record(next(iter(hf.values())), SkipCounter())
    assert image.dtype == np.uint8 and image.ndim == 3 and caption


def test_corrupt_samples_are_skipped_and_counted(corrupt_shard: Path) -> None:
    skips = SkipCounter()
    out = [decode_record(r, skips) for _, r in iter_shard(str(corrupt_shard), skips)]
    good = [o for o in out if o is not None]
    assert [c for _, c in good] == ["a red disc", "a green star \u2605"]
    assert dict(skips.counts) == {
        "image_undecodable": 1,
        "caption_not_utf8": 1,
        "caption_empty": 1,
        "caption_missing": 1,
        "image_missing": 1,
    }


def test_hf_source_survives_non_utf8_captions(corrupt_shard: Path) -> None:
    """datasets' webdataset builder would raise on the bad caption and end the stream; ours counts it."""
    from synseg.data.train.hf_source import HFSource

    src = HFSource("webdataset", data_files=str(corrupt_shard))
    skips = SkipCounter()
    decoded = [decode_record(r, skips) for r in islice(iter(src.lane(0, 1, 0, 1, None, skips)), 7)]
    assert sum(d is not None for d in decoded) == 2
    assert skips.counts["caption_not_utf8"] == 1 and skips.counts["image_undecodable"] == 1


def test_brace_ranges_lists_and_globs(tmp_path: Path) -> None:
    assert expand_urls("a-{000..002}.tar") == ["a-000.tar", "a-001.tar", "a-002.tar"]
    assert expand_urls("a.tar::b-{1..2}.tar") == ["a.tar", "b-1.tar", "b-2.tar"]
    assert expand_urls("pipe:cat x-{0..1}.tar") == ["pipe:cat x-0.tar", "pipe:cat x-1.tar"]
    for i in (2, 0, 1):
        good_shard(tmp_path / f"s-{i}.tar", [f"k{i}"])
    assert expand_urls(str(tmp_path / "s-*.tar")) == [str(tmp_path / f"s-{i}.tar") for i in range(3)]
    remote = expand_urls(f"https://h/x-{{0..1}}.tar?{tmp_path}")  # not globbed, not checked
    assert remote == [f"https://h/x-0.tar?{tmp_path}", f"https://h/x-1.tar?{tmp_path}"]


def test_bad_shard_configs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.shards\.urls: the shard pattern .* matched no files"):
        ShardSource.from_config({"urls": str(tmp_path / "nothing-*.tar")})
    with pytest.raises(
        ConfigError, match=r"data\.shards\.urls: 2 shard\(s\) do not exist, e\.g\. '.*/n-0.tar'"
    ):
        ShardSource.from_config({"urls": str(tmp_path / "n-{0..1}.tar")})
    with pytest.raises(ConfigError, match=r"unsupported URL scheme in 'ftp://h/a.tar'"):
        ShardSource.from_config({"urls": "ftp://h/a.tar"})
    good_shard(tmp_path / "a.tar", ["k"])
    with pytest.raises(
        ConfigError, match=r"data\.shards\.sources\[0\]\.weight: expected a number > 0, got -1"
    ):
        ShardSource.from_config({"sources": [{"urls": str(tmp_path / "a.tar"), "weight": -1}]})
    with pytest.raises(ConfigError, match=r"data\.shards: give exactly one of urls .* or sources"):
        ShardSource.from_config({"urls": str(tmp_path / "a.tar"), "sources": [{"urls": "x"}]})
    with pytest.raises(ConfigError, match=r"data\.shards\.shuffle: unknown key"):
        ShardSource.from_config({"urls": str(tmp_path / "a.tar"), "shuffle": 3})


def test_unreachable_hf_dataset_is_a_clear_error() -> None:
    from synseg.data.train.hf_source import HFSource

    with pytest.raises(
        ConfigError, match=r"data\.hf\.path: cannot open Hugging Face dataset 'no-such-org/no"
    ):
        HFSource("no-such-org/no-such-dataset-xyz")


def test_pipe_urls_read_like_local_files(toy_shards: Path) -> None:
    local = sorted(str(p) for p in toy_shards.glob("*.tar"))[:2]
    piped = [f"pipe:cat {p}" for p in local]
    for a, b in zip(local, piped, strict=True):
        assert [r["__key__"] for _, r in iter_shard(a, SkipCounter())] == [
            r["__key__"] for _, r in iter_shard(b, SkipCounter())
        ]
    skips = SkipCounter()  # a failing command is a broken shard, counted
    assert list(iter_shard(f"pipe:cat {toy_shards}/missing.tar", skips)) == []
    assert skips.counts["shard_broken"] == 1


@pytest.fixture()
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server (127.0.0.1, no network) serving tmp_path."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()


def test_http_urls_with_brace_ranges(http_root: tuple[str, Path]) -> None:
    base, root = http_root
    for i in range(3):
        good_shard(root / f"w-{i}.tar", [f"{i}-{j}" for j in range(2)])
    src = ShardSource.from_config({"urls": f"{base}/w-{{0..2}}.tar", "shuffle_buffer": 0})
    assert len(src.sets[0].urls) == 3
    keys = lane_keys(src, 0, 1, 0, 1, 6)
    assert sorted(keys) == sorted(f"{i}-{j}" for i in range(3) for j in range(2))
    skips = SkipCounter()  # a 404 is a broken shard (curl -f fails), counted
    assert list(iter_shard(f"{base}/missing.tar", skips)) == [] and skips.counts["shard_broken"] == 1


def test_weighted_mix_follows_the_weights_and_is_deterministic(tmp_path: Path) -> None:
    good_shard(tmp_path / "a.tar", [f"a{i}" for i in range(5)])
    good_shard(tmp_path / "b.tar", [f"b{i}" for i in range(5)])
    sets = [
        {"urls": str(tmp_path / "a.tar"), "weight": 0.75},
        {"urls": str(tmp_path / "b.tar"), "weight": 0.25},
    ]
    cfg = {"sources": sets, "shuffle_buffer": 4}
    src = ShardSource.from_config(cfg, seed=3)
    keys = lane_keys(src, 0, 1, 0, 1, 2000)
    share = sum(k.startswith("a") for k in keys) / len(keys)
    assert 0.72 < share < 0.78
    assert keys == lane_keys(ShardSource.from_config(cfg, seed=3), 0, 1, 0, 1, 2000)
    assert keys != lane_keys(ShardSource.from_config(cfg, seed=4), 0, 1, 0, 1, 2000)


@pytest.mark.parametrize("resampled", [False, True])
def test_more_slots_than_shards_never_hang(tmp_path: Path, resampled: bool) -> None:
    """2 shards, 3 ranks x 2 workers = 6 slots: every slot fills its batches (sample split or resampling)."""
    good_shard(tmp_path / "s0.tar", [f"a{i}" for i in range(7)])
    good_shard(tmp_path / "s1.tar", [f"b{i}" for i in range(5)])
    src = ShardSource.from_config(
        {"urls": str(tmp_path / "s*.tar"), "shuffle_buffer": 0, "resampled": resampled}
    )
    per_slot = {(r, w): lane_keys(src, r, 3, w, 2, 20) for r in range(3) for w in range(2)}
    assert all(len(keys) == 20 for keys in per_slot.values())
    if resampled:  # slots draw their own shard sequences (seeded by slot), with replacement
        draws = {slot: [src.resampled_url(0, slot, t) for t in range(12)] for slot in range(6)}
        assert len({tuple(d) for d in draws.values()}) == 6 and all(len(set(d)) == 2 for d in draws.values())
        assert per_slot == {(r, w): lane_keys(src, r, 3, w, 2, 20) for r in range(3) for w in range(2)}
        assert "each slot draws shards with replacement" in src.plan(3, 2)[0]
    else:  # one pass = 12 records, each in exactly one slot (2 per slot)
        first_pass = [k for keys in per_slot.values() for k in keys[:2]]
        assert sorted(first_pass) == sorted([f"a{i}" for i in range(7)] + [f"b{i}" for i in range(5)])
        assert "every slot reads every shard and keeps 1 sample in 6" in src.plan(3, 2)[0]


def test_shards_split_by_slot_cover_each_pass_once(tmp_path: Path) -> None:
    sizes = [4, 2, 3, 1, 2, 5]
    for s, n in enumerate(sizes):
        good_shard(tmp_path / f"u{s}.tar", [f"{s}-{i}" for i in range(n)])
    src = ShardSource.from_config({"urls": str(tmp_path / "u*.tar"), "shuffle_buffer": 3})
    seen: Counter = Counter()
    for slot in range(4):
        mine, split = src.slot_urls(0, slot, 4, 0)
        n = sum(sizes[int(Path(u).stem[1:])] for u in mine)
        seen.update(lane_keys(src, slot // 2, 2, slot % 2, 2, n))  # exactly this slot's first pass
        assert not split
    assert len(seen) == sum(sizes) and set(seen.values()) == {1}
