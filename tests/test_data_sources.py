"""Shard reading, the HF `datasets` streaming path on local shards, and corrupt-sample handling."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synseg.data.records import SkipCounter, decode_record
from synseg.data.sources import HFSource, ShardSource, expand_urls
from synseg.data.tar_reader import iter_tar_records


def _jpeg(color: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), color, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


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


def test_tar_reader_groups_members_by_key(toy_shards: Path) -> None:
    shards = expand_urls(str(toy_shards / "*.tar"))
    assert len(shards) == 8
    records = [r for s in shards for r in iter_tar_records(s)]
    assert len(records) == 48
    assert len({r["__key__"] for r in records}) == 48
    assert all({"jpg", "txt", "json"} <= set(r) for r in records)


def test_shard_round_trip_through_hf_datasets_streaming(toy_shards: Path) -> None:
    """The same shards read by `datasets.load_dataset("webdataset", streaming=True)` and by our tar reader."""
    import datasets

    from synseg.data.sources import _keep_raw_fields

    _keep_raw_fields()
    files = sorted(str(p) for p in toy_shards.glob("*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train", streaming=True)
    hf = {ex["__key__"]: ex for ex in ds.decode(False)}
    ours = {r["__key__"]: r for f in files for r in iter_tar_records(f)}
    assert set(hf) == set(ours) and len(ours) == 48
    for key, rec in ours.items():
        assert hf[key]["txt"] == rec["txt"]
        assert hf[key]["jpg"]["bytes"] == rec["jpg"]
    # And decoded through our record decoder, the images equal the JPEG decode of the original bytes.
    image, caption = decode_record(next(iter(hf.values())), SkipCounter())
    assert image.dtype == np.uint8 and image.ndim == 3 and caption


def test_corrupt_samples_are_skipped_and_counted(corrupt_shard: Path) -> None:
    skips = SkipCounter()
    out = [decode_record(r, skips) for r in iter_tar_records(str(corrupt_shard))]
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
    src = HFSource("webdataset", data_files=str(corrupt_shard))
    skips = SkipCounter()
    decoded = [decode_record(r, skips) for r in src.records(0, 1, 0, 1, 0, skips)]
    assert sum(d is not None for d in decoded) == 2
    assert skips.counts["caption_not_utf8"] == 1 and skips.counts["image_undecodable"] == 1


def test_truncated_shard_keeps_earlier_samples(tmp_path: Path, toy_shards: Path) -> None:
    data = sorted(toy_shards.glob("*.tar"))[0].read_bytes()
    cut = tmp_path / "cut-000000.tar"
    cut.write_bytes(data[: len(data) // 2])
    src = ShardSource(str(cut))
    skips = SkipCounter()
    got = list(src.records(0, 1, 0, 1, 0, skips))
    assert 0 < len(got) < 6
    assert skips.counts["shard_broken"] == 1


def test_shard_glob_matching_nothing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.urls: the shard pattern .* matched no files"):
        ShardSource(str(tmp_path / "nothing-*.tar"))


def test_unreachable_hf_dataset_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"data\.hf\.path: cannot open Hugging Face dataset 'no-such-org/no"):
        HFSource("no-such-org/no-such-dataset-xyz")


def test_brace_expansion() -> None:
    assert expand_urls("a-{000..002}.tar") == ["a-000.tar", "a-001.tar", "a-002.tar"]
