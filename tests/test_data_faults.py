"""Data faults never hang and never pass silently: one shard per fault kind counted exactly through the
real CaptionDataModule / train_dataloader path, a shard cut at every byte offset, streams that cannot go
on stop with DataStreamError, and the image conversions give the right pixels."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synseg.data.train.records import DecodeOptions, SkipCounter, decode_record
from synseg.data.train.shard_reader import iter_shard, iter_tar_stream
from synseg.errors import DataStreamError, one_line
from tests.test_data_sources import _jpeg, good_shard, write_tar
from tests.test_datamodule import collect, make_dm


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares width x height pixels (a decompression bomb for PIL's check)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 8))
        + chunk(b"IEND", b"")
    )


def palette_png_with_transparency() -> bytes:
    im = Image.new("P", (20, 20), 0)
    im.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    im.paste(1, (0, 0, 10, 20))  # left half colour 1 (red), right half colour 0 (transparent)
    return encode(im, transparency=0)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return encode(Image.new("RGB", (40, 20), (10, 200, 10)), "JPEG", exif=exif)


GOOD = ("good.jpg", _jpeg(90, 20))
# shard name -> (fields of its fault sample, the count key it must add); a good sample follows it
SAMPLE_FAULTS = {
    "undecodable": ({"jpg": b"not an image", "txt": b"a red disc"}, "skipped/image_undecodable"),
    "missing_image": ({"txt": b"a caption without image"}, "skipped/image_missing"),
    "missing_caption": ({"jpg": _jpeg(20, 20)}, "skipped/caption_missing"),
    "empty_caption": ({"jpg": _jpeg(20, 20), "txt": b"  \n "}, "skipped/caption_empty"),
    "non_utf8_caption": (
        {"jpg": _jpeg(20, 20), "txt": "caf\xe9".encode("latin-1")},
        "skipped/caption_not_utf8",
    ),
    "long_caption": ({"jpg": _jpeg(20, 20), "txt": b"word " * 300}, "skipped/caption_too_long"),
    "tiny": ({"png": encode(Image.new("RGB", (1, 1))), "txt": b"a dot"}, "skipped/image_too_small"),
    "bomb": ({"png": png_header_only(100_000, 100_000), "txt": b"a bomb"}, "skipped/decompression_bomb"),
}
# shard name -> (image bytes of its one sample, the conversion it must count)
CONVERTED = {
    "png16": (encode(Image.fromarray(np.full((20, 20), 32896, np.uint16))), "converted/16bit"),
    "palette": (palette_png_with_transparency(), "converted/palette"),
    "cmyk": (encode(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG"), "converted/cmyk"),
    "rgba": (encode(Image.new("RGBA", (20, 20), (255, 0, 0, 0))), "converted/alpha"),
    "grey": (encode(Image.new("L", (20, 20), 100), "JPEG"), "converted/greyscale"),
    "exif": (exif_rotated_jpeg(), "converted/exif_rotated"),
}


def write_fault_shards(root: Path) -> dict[str, list[tuple[str, bool]]]:
    """One shard per fault kind; returns, per shard, its events in reading order: (count key, usable)."""
    events: dict[str, list[tuple[str, bool]]] = {}
    for name, (fields, key) in SAMPLE_FAULTS.items():  # the fault sample, then a good one
        members = [(f"bad.{ext}", data) for ext, data in fields.items()] + [GOOD, ("good.txt", b"a dog")]
        write_tar(root / f"{name}.tar", members)
        events[name] = [(key, False), ("", True)]
    for name, (data, key) in CONVERTED.items():
        ext = "jpg" if data[:2] == b"\xff\xd8" else "png"
        write_tar(root / f"{name}.tar", [(f"img.{ext}", data), ("img.txt", b"a shape")])
        events[name] = [(key, True)]
    full = good_shard(root / "full.tar", ["t0", "t1", "t2"])
    with tarfile.open(full) as tar:
        cut = tar.getmember("t2.jpg").offset_data + 10  # inside the 3rd sample's image data
    (root / "truncated.tar").write_bytes(full.read_bytes()[:cut])
    events["truncated"] = [
        ("", True),
        ("", True),
        ("skipped/sample_partial", False),
        ("skipped/shard_broken", False),
    ]
    (root / "full.tar").unlink()
    (root / "garbage.tar").write_bytes(bytes(range(256)) * 20)
    events["garbage"] = [("skipped/shard_broken", False)]
    (root / "zero_bytes.tar").write_bytes(b"")
    events["zero_bytes"] = [("skipped/shard_broken", False)]
    with tarfile.open(root / "no_member.tar", "w"):
        pass
    events["no_member"] = [("skipped/shard_empty", False)]
    return events


def test_every_fault_kind_is_counted_exactly_through_the_datamodule(
    tmp_path: Path, toy_folders: Path
) -> None:
    events = write_fault_shards(tmp_path)
    usable = sum(u for evs in events.values() for _, u in evs)  # 8 + 6 + 2 = 16 usable samples per pass
    shards = {"urls": str(tmp_path / "*.tar"), "shuffle_buffer": 0}
    dm = make_dm(toy_folders, "shards", world=1, workers=0, steps=usable + 1, batch=1, shards=shards)
    batches = collect(dm)
    got: Counter = Counter()
    for b in batches:
        got.update({f"skipped/{k}": v for k, v in b["skipped"].items()})
        got.update({f"converted/{k}": v for k, v in b["converted"].items()})
    # Expected: the whole first pass, then the second pass (its own shard order) up to its first usable one.
    expected: Counter = Counter(k for evs in events.values() for k, _ in evs if k)
    for url in dm.source.pass_urls(0, 1):
        evs = events[Path(url).stem]
        first_usable = next((i for i, (_, u) in enumerate(evs) if u), None)
        expected.update(k for k, _ in evs[: (first_usable + 1) if first_usable is not None else None] if k)
        if first_usable is not None:
            break
    assert dict(got) == dict(expected)
    assert all(len(b["keys"]) == 1 for b in batches) and len(batches) == usable + 1


def test_conversions_give_the_right_pixels() -> None:
    def decode(fields: dict, **opts) -> tuple[np.ndarray | None, SkipCounter]:
        skips = SkipCounter()
        out = decode_record({"txt": b"x", **fields}, skips, DecodeOptions(**opts))
        return (out[0] if out else None), skips

    img, _ = decode({"png": CONVERTED["png16"][0]})
    assert img.dtype == np.uint8 and img.shape == (20, 20, 3) and (img == 128).all()  # 32896/257, not 255
    img, _ = decode({"png": CONVERTED["palette"][0]})
    assert tuple(img[0, 0]) == (200, 30, 30) and tuple(img[0, 19]) == (255, 255, 255)  # transparent -> white
    img, _ = decode({"png": CONVERTED["rgba"][0]}, alpha_background=(0, 0, 255))
    assert (img == np.array([0, 0, 255], np.uint8)).all()
    img, _ = decode({"jpg": CONVERTED["cmyk"][0]})
    assert img[..., 0].mean() > 200 and img[..., 1:].mean() < 60  # C=0 M=Y=255: red
    img, _ = decode({"jpg": CONVERTED["exif"][0]})
    assert img.shape == (40, 20, 3)  # stored 40 wide x 20 high, displayed rotated
    _, skips = decode({"png": encode(Image.new("RGB", (40, 40)))}, max_image_pixels=1000)
    assert dict(skips.counts) == {"decompression_bomb": 1}
    _, skips = decode({"png": png_header_only(10_000, 10_000)})  # PIL's warning level, refused too
    assert dict(skips.counts) == {"decompression_bomb": 1}
    _, skips = decode({"png": encode(Image.new("RGB", (8, 30)))}, min_image_size=10)
    assert dict(skips.counts) == {"image_too_small": 1}


def test_a_shard_cut_at_every_byte_offset_is_counted_and_keeps_the_complete_samples(tmp_path: Path) -> None:
    members = [("k0.jpg", b"j" * 600), ("k0.txt", b"t" * 20), ("k1.jpg", b"x" * 30), ("k1.txt", b"y" * 5),
               ("k1.json", b"{}" * 350), ("k2.txt", b"end")]  # fmt: skip
    data = write_tar(tmp_path / "whole.tar", members).read_bytes()
    with tarfile.open(tmp_path / "whole.tar") as tar:
        infos = tar.getmembers()
    first_header_end = {}  # key -> offset where the first header of that sample is complete
    for info in infos:
        first_header_end.setdefault(info.name.split(".")[0], info.offset + 512)
    end_block = infos[-1].offset_data + -(-infos[-1].size // 512) * 512  # the first all-zero end block
    keys = list(first_header_end)
    for c in range(len(data) + 1):  # every offset, 0 .. the whole file (10240 bytes)
        skips = SkipCounter(max_logged=0)
        kept = [r["__key__"] for _, r in iter_tar_stream(io.BytesIO(data[:c]), "cut.tar", skips)]
        complete = c >= end_block + 512  # a cut after the end block loses nothing
        expected = (
            keys
            if complete
            else [k for k, nxt in zip(keys, keys[1:], strict=False) if c >= first_header_end[nxt]]
        )
        partial = not complete and any(c >= first_header_end[k] for k in keys if k not in expected)
        assert kept == expected, c
        assert skips.counts["shard_broken"] == (not complete), c
        assert skips.counts["sample_partial"] == partial, c
    cut = tmp_path / "cut.tar"  # the same through a file path (gopen), at a few offsets
    for c in (0, 100, 512, 1300, end_block, len(data)):
        cut.write_bytes(data[:c])
        skips = SkipCounter(max_logged=0)
        assert len(list(iter_shard(str(cut), skips))) == (3 if c == len(data) else 2 if c == end_block else 0)
        assert skips.counts["shard_broken"] == (c < len(data))


@pytest.mark.timeout(60)
def test_a_stream_without_usable_samples_stops_with_a_one_line_error(
    tmp_path: Path, toy_folders: Path
) -> None:
    write_tar(tmp_path / "bad.tar", [(f"{i}.jpg", b"garbage") for i in range(5)] + [("9.txt", b"no image")])
    shards = {"urls": str(tmp_path / "*.tar"), "shuffle_buffer": 0}
    dm = make_dm(toy_folders, "shards", world=1, workers=1, steps=3, batch=2, shards=shards)
    with pytest.raises(DataStreamError) as err:  # raised in the worker, re-raised by the DataLoader
        collect(dm)
    line = one_line(err.value)
    assert "no usable sample in a whole pass of 6 records" in line and str(tmp_path / "*.tar") in line
    assert "caption_missing=5" in line and "image_missing=1" in line


@pytest.mark.timeout(60)
@pytest.mark.parametrize("resampled", [False, True])
def test_only_broken_shards_stop_the_stream(tmp_path: Path, toy_folders: Path, resampled: bool) -> None:
    for i in range(3):
        (tmp_path / f"g{i}.tar").write_bytes(b"\x01" * 700)
    shards = {"urls": str(tmp_path / "g*.tar"), "shuffle_buffer": 4, "resampled": resampled}
    dm = make_dm(
        toy_folders,
        "shards",
        world=1,
        workers=0,
        steps=2,
        batch=2,
        shards=shards,
        faults={"max_consecutive_skips": 20},
    )
    expected = (
        "20 consecutive records or shards without a usable sample"
        if resampled
        else "no record in a whole pass"
    )
    with pytest.raises(DataStreamError, match=expected) as err:
        collect(dm)
    assert "shard_broken=" in str(err.value)


@pytest.mark.timeout(60)
def test_consecutive_skips_are_bounded(tmp_path: Path, toy_folders: Path) -> None:
    members = [(f"{i:03d}.jpg", b"garbage") for i in range(12)] + [(f"{i:03d}.txt", b"x") for i in range(12)]
    write_tar(tmp_path / "a.tar", members)  # 24 records (jpg and txt of one key are apart): none usable
    good_shard(tmp_path / "b.tar", ["g0", "g1"])
    shards = {"urls": str(tmp_path / "*.tar"), "shuffle_buffer": 0}
    with pytest.raises(DataStreamError, match="10 consecutive records or shards without a usable sample"):
        collect(make_dm(toy_folders, "shards", world=1, workers=0, steps=2, batch=2, shards=shards,
                        faults={"max_consecutive_skips": 10}))  # fmt: skip
    batches = collect(make_dm(toy_folders, "shards", world=1, workers=0, steps=2, batch=2, shards=shards))
    assert sum(b["skipped"].get("caption_missing", 0) for b in batches) >= 12


def test_toyworld_shards_read_with_the_new_reader(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    cmd = [sys.executable, "-m", "synseg.data.toy", "write", "--split", "train", "--n", "7", "--format",
           "shards", "--shard-size", "3", "--out", str(tmp_path), "--quiet"]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    skips = SkipCounter()
    records = [r for p in sorted(tmp_path.glob("*.tar")) for _, r in iter_shard(str(p), skips)]
    assert [r["__key__"] for r in records] == [f"{i:09d}" for i in range(7)] and not skips.counts
    decoded = [decode_record(r, skips) for r in records]
    assert all(d is not None and d[0].shape == (64, 64, 3) for d in decoded) and not skips.converted
