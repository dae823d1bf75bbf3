"""The data audit on a 5-shard uneven set (7, 3, 5, 1, 4 samples; one corrupt) with 2 ranks x 2 workers,
checked against a hand count, and its failure exit status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from synseg.data.audit import CONFIG_DIR, audit
from tests.test_data_sources import _jpeg, write_tar

SIZES = {"a": 7, "b": 3, "c": 5, "d": 1, "e": 4}


@pytest.fixture()
def five_shards(tmp_path: Path) -> Path:
    for name, n in SIZES.items():
        members = []
        for i in range(n):
            image = b"garbage" if (name, i) == ("c", 2) else _jpeg(30 * i, 20)  # c2: undecodable
            members += [(f"{name}{i}.jpg", image), (f"{name}{i}.txt", f"a photo {name}{i}".encode())]
        write_tar(tmp_path / f"{name}.tar", members)
    return tmp_path


def run_audit(overrides: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("audit", overrides=overrides)
    code = audit(cfg)
    return code, capsys.readouterr().out


def test_audit_of_an_uneven_shard_set_matches_a_hand_count(five_shards: Path, tmp_path: Path, capsys) -> None:
    code, out = run_audit(
        [
            "data=shards",
            f"data.shards.urls={five_shards}/*.tar",
            "data.shards.shuffle_buffer=0",
            "data.batch_size=2",
            "world_size=2",
            "num_workers=2",
            "steps=6",
            f"paths.root_dir={tmp_path}",
        ],
        capsys,
    )
    print(out)
    assert code == 0
    # Seed 0 shard orders (slot = rank * 2 + worker; slot s reads shards s, s + 4 of the pass order):
    #   pass 0: a e b d c -> slot 0: a, c   slot 1: e   slot 2: b   slot 3: d
    #   pass 1: e b d c a -> slot 0: e, a   slot 1: b   slot 2: d   slot 3: c
    #   pass 2: a d b c e -> slot 0: a, e   slot 1: d   slot 2: b   slot 3: c
    # Each slot fills 3 batches of 2 = 6 samples:
    #   slot 0: a0-a5                                   (a6 is never read)
    #   slot 1: e0-e3 (pass 0), b0 b1 (pass 1)
    #   slot 2: b0-b2 (pass 0), d0 (pass 1), b0 b1 (pass 2)
    #   slot 3: d0 (pass 0), c0 c1 [c2 skipped] c3 c4 (pass 1), c0 (pass 2)
    # 24 samples yielded; unique: a0-a5, e0-e3, b0-b2, d0, c0 c1 c3 c4 = 18; duplicates 24 - 18 = 6;
    # read: those 18 + c2 = 19 of 20, never reached: a6 = 1; skipped: c2 = 1.
    slot_lines = {m.group(1, 2): m.group(3) for m in re.finditer(r"rank (\d) worker (\d): (.*)", out)}
    assert slot_lines[("0", "0")].startswith("3 batches, 6 samples, 0 skipped, shards read: a.tar [ok]")
    assert slot_lines[("0", "1")].startswith(
        "3 batches, 6 samples, 0 skipped, shards read: e.tar, b.tar [ok]"
    )
    assert slot_lines[("1", "0")].startswith(
        "3 batches, 6 samples, 0 skipped, shards read: b.tar, d.tar [ok]"
    )
    assert slot_lines[("1", "1")].startswith(
        "3 batches, 6 samples, 1 skipped, shards read: d.tar, c.tar [ok]"
    )
    lines = out.splitlines()
    for expected in ("rank 0 batches 6", "rank 1 batches 6", "unique samples 18", "duplicates 6",
                     "never reached 1", "skipped 1", "skipped/image_undecodable 1"):  # fmt: skip
        assert expected in lines, expected
    assert "4-5 shard(s)" not in out and "1-2 shard(s) per slot and pass" in out  # the split plan line


def test_audit_fails_when_a_slot_cannot_fill_its_batches(tmp_path: Path, capsys) -> None:
    write_tar(
        tmp_path / "bad.tar", [("0.jpg", b"garbage"), ("0.txt", b"x"), ("1.jpg", b"junk"), ("1.txt", b"y")]
    )
    code, out = run_audit(
        [
            "data=shards",
            f"data.shards.urls={tmp_path}/*.tar",
            "world_size=2",
            "num_workers=1",
            "steps=3",
            f"paths.root_dir={tmp_path}",
        ],  # fmt: skip
        capsys,
    )
    assert code == 1
    assert "rank 0 batches 0" in out.splitlines() and "rank 1 batches 0" in out.splitlines()
    assert "FAILED: " in out and "no usable sample in a whole pass" in out


def test_audit_of_the_toy_world_counts_samples_without_an_inventory(tmp_path: Path, capsys) -> None:
    code, out = run_audit(["world_size=3", "num_workers=2", "steps=4", "data.batch_size=5",
                           f"paths.root_dir={tmp_path}"], capsys)  # fmt: skip
    lines = out.splitlines()
    assert code == 0 and "unique samples 60" in lines and "duplicates 0" in lines
    assert "never reached n/a" in lines and "rank 2 batches 4" in lines
