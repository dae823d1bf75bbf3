"""Tests of the benchmark loaders: tiny fake datasets in each native layout (written here), file lists, label
remapping per variant, class lists, layout errors, undecodable files and collate_eval."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from synseg.data.benchmarks import (
    BENCHMARKS,
    EvalDataset,
    benchmark_classes,
    benchmark_names,
    build_eval_dataset,
    collate_eval,
)

# name -> (image path, mask path, split file or None) under DATA_ROOT, written out by hand (not taken from the
# specs, so a wrong spec fails here). {c} is the Cityscapes city.
VOC = ("VOCdevkit/VOC2012/JPEGImages/{k}.jpg", "VOCdevkit/VOC2012/SegmentationClass/{k}.png")
CTX = ("VOCdevkit/VOC2010/JPEGImages/{k}.jpg", "VOCdevkit/VOC2010/SegmentationClassContext/{k}.png")
LAYOUTS = {
    "voc21": (*VOC, "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"),
    "voc20": (*VOC, "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"),
    "context60": (*CTX, "VOCdevkit/VOC2010/ImageSets/SegmentationContext/val.txt"),
    "context59": (*CTX, "VOCdevkit/VOC2010/ImageSets/SegmentationContext/val.txt"),
    "coco_object": (
        "coco_stuff164k/images/val2017/{k}.jpg",
        "coco_stuff164k/annotations/val2017/{k}_instanceTrainIds.png",
        None,
    ),
    "coco_stuff": (
        "coco_stuff164k/images/val2017/{k}.jpg",
        "coco_stuff164k/annotations/val2017/{k}_labelTrainIds.png",
        None,
    ),
    "cityscapes": (
        "cityscapes/leftImg8bit/val/{c}/{k}_leftImg8bit.png",
        "cityscapes/gtFine/val/{c}/{k}_gtFine_labelTrainIds.png",
        None,
    ),
    "ade20k": (
        "ADEChallengeData2016/images/validation/{k}.jpg",
        "ADEChallengeData2016/annotations/validation/{k}.png",
        None,
    ),
    "folder": ("images/{k}.png", "masks/{k}.png", None),
}
# name -> (number of classes, has background, file values, the labels they must load as)
LABELS = {
    "voc21": (21, True, [0, 1, 20, 255], [0, 1, 20, 255]),
    "voc20": (20, False, [0, 1, 20, 255], [255, 0, 19, 255]),
    "context60": (60, True, [0, 1, 59, 255], [0, 1, 59, 255]),
    "context59": (59, False, [0, 1, 59, 255], [255, 0, 58, 255]),
    "coco_object": (81, True, [0, 1, 80, 255], [0, 1, 80, 255]),
    "coco_stuff": (171, False, [0, 1, 170, 255], [0, 1, 170, 255]),
    "cityscapes": (19, False, [0, 1, 18, 255], [0, 1, 18, 255]),
    "ade20k": (150, False, [0, 1, 150, 255], [255, 0, 149, 255]),
    "folder": (3, True, [0, 1, 2, 255], [0, 1, 2, 255]),
}
SIZES = [(5, 4), (7, 3), (4, 6)]  # (W, H): all different
KEYS = ["frankfurt_000000_000294", "frankfurt_000001_000019", "lindau_000000_000019"]
SPLIT_ORDER = [KEYS[2], KEYS[0], KEYS[1]]  # not sorted: the split file decides the order


def _mask_values(values: list[int], w: int, h: int) -> np.ndarray:
    return np.resize(np.asarray(values, dtype=np.uint8), h * w).reshape(h, w)


def _save_mask(path, array: np.ndarray, palette: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not palette:
        Image.fromarray(array).save(path)
        return
    im = Image.new("P", array.shape[::-1])  # VOC style: the palette index is the label, colours are for show
    im.putpalette([0, 0, 0, 128, 0, 0] + [(i * 7) % 256 for i in range(6, 768)])
    im.putdata(array.ravel().tolist())
    im.save(path)


def _fake(root, name: str, values: list[int], sizes=SIZES, extra: bool = True) -> list[np.ndarray]:
    """Write 3 samples of `name` (plus, with a split file, one image the split does not list)."""
    image_t, mask_t, split = LAYOUTS[name]
    masks = []
    keys = KEYS + (["zzz_not_in_split"] if split and extra else [])
    for i, (k, (w, h)) in enumerate(zip(keys, sizes + [(3, 3)], strict=False)):
        city = k.split("_")[0]
        image = root / image_t.format(k=k, c=city)
        image.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image)
        mask = _mask_values(values, w, h)
        _save_mask(root / mask_t.format(k=k, c=city), mask, palette=name.startswith("voc"))
        masks.append(mask)
    if split:
        (root / split).parent.mkdir(parents=True, exist_ok=True)
        (root / split).write_text("\n".join(SPLIT_ORDER) + "\n\n")
        masks = [masks[KEYS.index(k)] for k in SPLIT_ORDER]
    if name == "folder":
        (root / "classes.txt").write_text("background\ncat\ndog\n")
    return masks


def test_registry_names_and_class_lists() -> None:
    assert benchmark_names() == [
        "voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff", "cityscapes", "ade20k",
        "folder", "toy", "toy_dev", "toy_ood",
    ]  # fmt: skip
    assert list(BENCHMARKS) == benchmark_names()
    for name, (n, *_) in LABELS.items():
        if name != "folder":
            classes = benchmark_classes(name)
            assert len(classes) == n == len(set(classes)), name
            assert all(c == c.strip() and c for c in classes), name
    assert benchmark_classes("voc20") == benchmark_classes("voc21")[1:]
    assert benchmark_classes("context59") == benchmark_classes("context60")[1:]
    assert benchmark_classes("coco_object")[1:] == benchmark_classes("coco_stuff")[:80]
    assert benchmark_classes("voc21")[0] == benchmark_classes("context60")[0] == "background"
    assert benchmark_classes("voc21")[1::19] == ["aeroplane", "tvmonitor"]
    assert benchmark_classes("context59") == sorted(benchmark_classes("context59"))  # mmseg 1.x order
    assert benchmark_classes("ade20k")[:2] == ["wall", "building"] and benchmark_classes("ade20k")[7] == "bed"
    assert benchmark_classes("cityscapes")[0] == "road" and benchmark_classes("coco_stuff")[-1] == "wood"
    with pytest.raises(ValueError, match="unknown benchmark 'voc'; expected one of voc21, voc20"):
        build_eval_dataset("voc", "x")


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_loads_native_layout_with_remapped_labels(tmp_path, name: str) -> None:
    n, has_bg, file_values, labels = LABELS[name]
    masks = _fake(tmp_path, name, file_values)
    ds = build_eval_dataset(name, tmp_path)
    assert isinstance(ds, EvalDataset) and ds.name == name and ds.root == tmp_path
    assert len(ds.classes) == n and ds.has_background is has_bg and ds.ignore_index == 255
    assert (ds.classes[0] == "background") is has_bg
    split = LAYOUTS[name][2]
    assert [ds[i]["key"] for i in range(len(ds))] == (SPLIT_ORDER if split else sorted(KEYS))
    lut = dict(zip(file_values, labels, strict=True))
    for i in range(len(ds)):
        item = ds[i]
        h, w = masks[i].shape
        assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, h, w)
        assert item["mask"].dtype == torch.int64 and item["mask"].shape == (h, w)
        expected = np.vectorize(lut.get)(masks[i])
        np.testing.assert_array_equal(item["mask"].numpy(), expected)
        assert item["mask_name"] == LAYOUTS[name][1].format(k=item["key"], c="x").rsplit("/", 1)[1]
        assert item["image_path"].endswith(item["key"] + LAYOUTS[name][0].rsplit("{k}", 1)[1])
        assert np.array_equal(
            item["image"].permute(1, 2, 0).numpy(), np.asarray(Image.open(item["image_path"]))
        )


@pytest.mark.parametrize(("with_bg", "without_bg"), [("voc21", "voc20"), ("context60", "context59")])
def test_background_variants_on_the_same_files(tmp_path, with_bg: str, without_bg: str) -> None:
    _fake(tmp_path, with_bg, [0, 3, 7, 255, 1])
    a, b = build_eval_dataset(with_bg, tmp_path), build_eval_dataset(without_bg, tmp_path)
    assert a.classes[1:] == b.classes
    for i in range(len(a)):
        m = a[i]["mask"]
        expected = torch.where((m == 0) | (m == 255), torch.full_like(m, 255), m - 1)
        assert torch.equal(b[i]["mask"], expected)


def test_toy_folder_from_the_generator(tmp_path) -> None:
    from synseg.data.toy import write_folder

    root = write_folder(tmp_path / "toy" / "test", "test", 3, seed=0, progress=False)
    ds = build_eval_dataset("toy", root)
    assert len(ds) == 3 and ds.has_background and ds.classes[0] == "background"
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_eval)))
    assert batch["stacked"] and batch["image"].shape[:2] == (3, 3)
    labels = batch["mask"].unique()
    assert ((labels < len(ds.classes)) | (labels == 255)).all()


@pytest.mark.parametrize("name", benchmark_names())
def test_missing_root_shows_layout(tmp_path, name: str) -> None:
    with pytest.raises(FileNotFoundError) as err:
        build_eval_dataset(name, tmp_path / "nowhere")
    text = str(err.value)
    assert text.startswith(f"{name}: dataset missing") and "expected layout:" in text and "missing:" in text
    assert str(tmp_path / "nowhere") in text


def test_incomplete_voc_lists_every_missing_piece(tmp_path) -> None:
    (tmp_path / "VOCdevkit/VOC2012/JPEGImages").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as err:
        build_eval_dataset("voc21", tmp_path)
    text = str(err.value)
    assert "SegmentationClass/ (masks)" in text and "ImageSets/Segmentation/val.txt (the split list" in text
    assert "JPEGImages/<id>.jpg" in text and "JPEGImages/ (images)" not in text


def test_missing_masks_counted_with_an_example(tmp_path) -> None:
    _fake(tmp_path, "context60", [0, 1])
    for k in KEYS[:2]:
        (tmp_path / LAYOUTS["context60"][1].format(k=k)).unlink()
    with pytest.raises(
        FileNotFoundError, match=r"2 of 3 mask\(s\) listed in ImageSets/SegmentationContext/val.txt"
    ):
        build_eval_dataset("context60", tmp_path)
    (tmp_path / LAYOUTS["context60"][0].format(k=KEYS[2])).unlink()
    with pytest.raises(FileNotFoundError, match=rf"1 of 3 image\(s\) .*e\.g\. .*{KEYS[2]}\.jpg"):
        build_eval_dataset("context60", tmp_path)


def test_folder_missing_classes_and_bad_class_names(tmp_path) -> None:
    _fake(tmp_path, "folder", [0, 1])
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match="classes.txt \\(class names"):
        build_eval_dataset("folder", tmp_path)
    (tmp_path / "classes.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(ValueError, match="classes.txt: duplicate class names \\['cat'\\]"):
        build_eval_dataset("folder", tmp_path)
    (tmp_path / "classes.txt").write_text("cat\n\ndog\n")
    with pytest.raises(ValueError, match="classes.txt: empty class name on line"):
        build_eval_dataset("folder", tmp_path)
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    ds = build_eval_dataset("folder", tmp_path)
    assert not ds.has_background and ds.classes == ["cat", "dog"]


@pytest.mark.parametrize(
    ("name", "value"), [("voc21", 21), ("voc20", 21), ("ade20k", 151), ("cityscapes", 19)]
)
def test_out_of_range_label_names_the_file(tmp_path, name: str, value: int) -> None:
    _fake(tmp_path, name, [0, 1, value])
    ds = build_eval_dataset(name, tmp_path)
    with pytest.raises(ValueError, match=rf"{ds.samples[0].mask.name}: label value\(s\) \[{value}\] outside"):
        ds[0]


def test_mask_size_mismatch_and_colour_mask_name_the_file(tmp_path) -> None:
    _fake(tmp_path, "coco_stuff", [0, 1])
    ds = build_eval_dataset("coco_stuff", tmp_path)
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(ds.samples[0].mask)
    with pytest.raises(ValueError, match=rf"{ds.samples[0].mask}: mask size 9x9 \(WxH\) differs .* 5x4"):
        ds[0]
    Image.fromarray(np.zeros((3, 7, 3), np.uint8)).save(ds.samples[1].mask)
    with pytest.raises(ValueError, match=rf"{ds.samples[1].mask.name}: mask has PIL mode RGB"):
        ds[1]


def test_undecodable_files_become_skip_entries(tmp_path) -> None:
    _fake(tmp_path, "ade20k", [0, 1])
    ds = build_eval_dataset("ade20k", tmp_path)
    ds.samples[0].image.write_bytes(b"not a jpeg")
    ds.samples[1].mask.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    first, second = ds[0], ds[1]
    assert set(first) == {"key", "skip"} and first["key"] == ds.samples[0].key
    assert first["skip"].startswith(f"{ds.samples[0].image}: cannot decode")
    assert second["skip"].startswith(f"{ds.samples[1].mask}: cannot decode")
    batch = collate_eval([first, ds[2], second])
    assert [s["key"] for s in batch["skipped"]] == [ds.samples[0].key, ds.samples[1].key]
    assert batch["key"] == [ds.samples[2].key] and batch["stacked"] and batch["image"].shape[0] == 1


def test_collate_stacks_equal_sizes_and_lists_mixed_sizes(tmp_path) -> None:
    _fake(tmp_path, "coco_object", [0, 5, 255], sizes=[(4, 3), (4, 3), (6, 2)])
    ds = build_eval_dataset("coco_object", tmp_path)
    same = collate_eval([ds[0], ds[1]])
    assert same["stacked"] and same["image"].shape == (2, 3, 3, 4) and same["mask"].shape == (2, 3, 4)
    assert same["mask"].dtype == torch.int64 and same["skipped"] == []
    mixed = collate_eval([ds[0], ds[2]])
    assert not mixed["stacked"] and isinstance(mixed["image"], list) and isinstance(mixed["mask"], list)
    assert [m.shape for m in mixed["mask"]] == [(3, 4), (2, 6)]
    assert mixed["mask_name"] == [f"{KEYS[0]}_instanceTrainIds.png", f"{KEYS[2]}_instanceTrainIds.png"]
    empty = collate_eval([])
    assert empty["image"] == [] and not empty["stacked"]
