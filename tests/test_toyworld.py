"""Tests of the toy world: determinism, scene statistics, captions, writers, reference levels and the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from synseg.data.toy import (
    CATEGORIES,
    SPLITS,
    SYNONYMS,
    ToySample,
    ToyWorldConfig,
    generate_sample,
    write_folder,
    write_sample_sheet,
    write_shards,
)
from synseg.data.toy.captions import caption_vocabulary, colour_word
from synseg.data.toy.reference import (
    all_background_miou,
    background_fraction,
    confusion_matrix,
    miou_from_confusion,
    patch_grid_ceiling,
)
from synseg.data.toy.scene import compose_scene, split_rng

VOCAB = caption_vocabulary()


@pytest.fixture(scope="module")
def samples() -> list[ToySample]:
    return [generate_sample(0, "val", i) for i in range(200)]


def words(caption: str) -> list[str]:
    return re.findall(r"[a-z0-9-]+", caption.lower())


def test_public_constants():
    assert len(CATEGORIES) == 10 and CATEGORIES[0] == "circle" and CATEGORIES[-1] == "crescent"
    assert SPLITS == {"train": 0, "val": 1, "test": 2, "dense": 3, "dev": 4, "ood": 5}
    assert set(SYNONYMS) == set(CATEGORIES)
    nouns = [n for syn in SYNONYMS.values() for n in syn]
    assert len(nouns) == len(set(nouns)) and not set(nouns) & set(CATEGORIES)
    assert all(re.fullmatch(r"[a-z]+", n) for n in nouns)  # plain single-word nouns


def test_determinism():
    a, b = generate_sample(3, "train", 7), generate_sample(3, "train", 7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert (a.caption, a.labels, a.mentioned) == (b.caption, b.labels, b.mentioned)
    for other in (
        generate_sample(3, "train", 8),
        generate_sample(3, "val", 7),
        generate_sample(4, "train", 7),
    ):
        assert not np.array_equal(a.image, other.image)


def test_unknown_split_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"'bogus'.*train, val, test, dense"):
        generate_sample(0, "bogus", 0)


def test_shapes_dtypes_and_labels(samples):
    allowed = set(range(len(CATEGORIES) + 1)) | {255}
    for s in samples:
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        assert s.mask.shape == (64, 64) and s.mask.dtype == np.uint8
        present = set(np.unique(s.mask).tolist())
        assert present <= allowed
        assert tuple(sorted(present - {0, 255})) == tuple(c + 1 for c in s.labels)
        assert 1 <= len(s.labels) <= 4 and list(s.labels) == sorted(s.labels)
        assert s.mentioned and set(s.mentioned) <= set(s.labels) and list(s.mentioned) == sorted(s.mentioned)
    assert generate_sample(0, "val", 0, ToyWorldConfig(image_size=96)).mask.shape == (96, 96)
    no_ignore = generate_sample(0, "val", 0, ToyWorldConfig(ignore_edges=False))
    assert 255 not in no_ignore.mask


def test_caption_nouns_match_mentioned(samples):
    synonym_uses = mentions = 0
    for s in samples:
        found = {VOCAB[w] for w in words(s.caption) if w in VOCAB}
        assert found == set(s.mentioned), s.caption  # every mentioned noun present, no stray category noun
        for w in words(s.caption):
            if w in VOCAB:
                mentions += 1
                synonym_uses += w not in CATEGORIES
    assert 0.3 < synonym_uses / mentions < 0.6


def test_omission_rate(samples):
    multi = [s for s in samples if len(s.labels) > 1]
    omitted = sum(len(s.mentioned) < len(s.labels) for s in multi)
    assert len(multi) > 50 and 0.08 < omitted / len(multi) < 0.35
    assert all(s.mentioned == s.labels for s in samples if len(s.labels) == 1)


def test_captions_vary(samples):
    captions = [s.caption for s in samples]
    assert len(set(captions)) > 0.9 * len(captions)
    text = " ".join(captions).lower()
    for phrase in (
        "a photo of",
        "backdrop",
        "shapes:",
        "clipart",
        " and ",
        "next to",
        "beside",
        "stock",
        "hd",
    ):
        assert phrase in text


def test_colour_words():
    assert [colour_word(h) for h in (0, 355, 30, 55, 120, 180, 225, 280, 320)] == [
        "red", "red", "orange", "yellow", "green", "teal", "blue", "purple", "pink",
    ]  # fmt: skip


def test_scene_statistics(samples):
    masks = [s.mask for s in samples]
    assert 0.60 <= background_fraction(masks) <= 0.75
    assert patch_grid_ceiling(masks, patch=8) > 0.75
    assert all_background_miou(masks) < 0.1


def test_occlusion_keeps_half_of_every_object():
    config = ToyWorldConfig(min_objects=4, max_objects=4)
    occluded = 0
    for i in range(60):
        scene = compose_scene(split_rng(0, "test", i), config)
        k = len(scene.objects)
        assert k >= 2
        visible = scene.weights[1 : k + 1].sum(axis=(1, 2))
        np.testing.assert_allclose(visible, scene.visible[:k], rtol=1e-3, atol=0.5)
        assert np.all(visible >= 0.5 * scene.areas[:k] - 0.5)
        occluded += int(np.any(visible < 0.97 * scene.areas[:k]))
    assert occluded > 10  # occlusion does happen


def test_write_folder_round_trip(tmp_path):
    out = write_folder(tmp_path / "test", "test", 6, seed=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "captions.jsonl",
        "classes.txt",
        "images",
        "masks",
        "meta.json",
    ]
    assert (out / "classes.txt").read_text().split("\n")[:2] == ["background", "circle"]
    records = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    assert [r["key"] for r in records] == [f"{i:06d}" for i in range(6)]
    for i, r in enumerate(records):
        s = generate_sample(1, "test", i)
        assert np.array_equal(np.array(Image.open(out / "masks" / f"{r['key']}.png")), s.mask)
        assert np.array_equal(np.array(Image.open(out / "images" / f"{r['key']}.png")), s.image)
        assert (r["caption"], tuple(r["labels"]), tuple(r["mentioned"])) == (s.caption, s.labels, s.mentioned)
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["seed"], meta["split"], meta["n"], meta["config"]["image_size"]) == (1, "test", 6, 64)
    assert [p.name for p in tmp_path.iterdir()] == ["test"]  # no temporary folder left behind


def test_write_folder_refuses_non_empty(tmp_path):
    out = tmp_path / "val"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="val"):
        write_folder(out, "val", 2, seed=0, progress=False)
    assert (out / "keep.txt").exists()
    write_folder(out, "val", 2, seed=0, progress=False, overwrite=True)
    assert not (out / "keep.txt").exists() and len(list((out / "masks").iterdir())) == 2


def test_write_shards_round_trip(tmp_path):
    paths = write_shards(tmp_path, "train", 5, seed=2, shard_size=2, progress=False)
    assert [p.name for p in paths] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert json.loads((tmp_path / "train-stats.json").read_text())["num_samples"] == 5
    index = 0
    for path in paths:
        with tarfile.open(path) as tar:
            names = tar.getnames()
            keys = [f"{i:09d}" for i in range(index, index + len(names) // 3)]
            assert names == [f"{k}.{ext}" for k in keys for ext in ("jpg", "txt", "json")]
            for key in keys:
                s = generate_sample(2, "train", int(key))
                assert tar.extractfile(f"{key}.txt").read().decode("utf-8") == s.caption
                meta = json.loads(tar.extractfile(f"{key}.json").read())
                assert meta == {"labels": list(s.labels), "mentioned": list(s.mentioned), "index": int(key)}
                jpg = np.array(Image.open(tar.extractfile(f"{key}.jpg")))
                assert jpg.shape == (64, 64, 3) and np.abs(jpg.astype(int) - s.image).mean() < 8
            index += len(keys)
    assert index == 5


def test_reference_levels_small_examples():
    gt = np.array([[0, 1], [1, 255]])
    pred = np.array([[0, 1], [0, 1]])
    conf = confusion_matrix(pred, gt, num_classes=3)
    assert conf.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    # class 0: tp 1, union 2 -> 0.5; class 1: tp 1, union 2 -> 0.5; class 2 absent -> excluded
    assert miou_from_confusion(conf) == pytest.approx(0.5)
    assert all_background_miou([gt], num_classes=3) == pytest.approx((1 / 3 + 0.0) / 2)
    # 4x4 mask, patch 2: top-left patch has majority 1 (3 of 4), the rest background
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = mask[0, 1] = mask[1, 0] = 1
    # ceiling prediction: class 1 on the whole top-left patch -> class 1 IoU 3/4, class 0 IoU 12/13
    assert patch_grid_ceiling([mask], patch=2, num_classes=2) == pytest.approx((12 / 13 + 3 / 4) / 2)
    assert patch_grid_ceiling([mask], patch=1, num_classes=2) == pytest.approx(1.0)


def test_sample_sheet(tmp_path):
    out = write_sample_sheet(tmp_path / "sheet.png", seed=0, n=2)
    assert Image.open(out).size[0] > 100


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synseg.data.toy", *args], capture_output=True, text=True)


def test_cli_write_and_bad_input(tmp_path):
    out = tmp_path / "test"
    done = run_cli("write", "--split", "test", "--n", "3", "--seed", "0", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    assert len(list((out / "masks").iterdir())) == 3
    again = run_cli("write", "--split", "test", "--n", "3", "--out", str(out))
    assert again.returncode == 2 and "--out" in again.stderr and "--overwrite" in again.stderr
    bad = run_cli("write", "--split", "test", "--n", "-3", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "--n" in bad.stderr and "-3" in bad.stderr
    shards = run_cli(
        "write", "--split", "train", "--n", "3", "--shard-size", "2", "--out", str(tmp_path / "sh")
    )
    assert shards.returncode == 0 and (tmp_path / "sh" / "train-000001.tar").exists()


def test_every_toy_noun_is_in_the_default_tagging_vocabulary() -> None:
    """Captions name objects by category or synonym; the offline tagger must know every one of them."""
    from synseg.data.train.tagging import DEFAULT_VOCAB_PATH, load_vocab

    vocab = set(load_vocab(DEFAULT_VOCAB_PATH))
    nouns = set(CATEGORIES) | {s for syns in SYNONYMS.values() for s in syns}
    assert nouns <= vocab, sorted(nouns - vocab)
