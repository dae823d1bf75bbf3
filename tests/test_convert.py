"""Tests of the benchmark converters (`python -m synseg.data.convert`): COCO RLE decoding, exact COCO-Object
and Pascal Context masks from tiny inputs written here, the pycocotools and PIL rasterisers against
pycocotools' own decoding, overwrite refusal and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from synseg.data.benchmarks import benchmark_classes, build_eval_dataset
from synseg.data.convert.cli import main
from synseg.data.convert.coco import (
    COCO_THING_IDS,
    convert_coco_object,
    rle_decode,
    rle_string_to_counts,
)
from synseg.data.convert.context import CONTEXT59_IDS, labelmap_to_context60
from synseg.data.convert.io import ConversionError


def rle_encode_string(counts: list[int]) -> str:
    """pycocotools' rleToString, to write compressed RLE test inputs."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | 0x20 if more else c) + 48))
    return "".join(out)


def mask_to_counts(mask: np.ndarray) -> list[int]:
    """Column-major RLE counts of a bool mask, starting with a run of 0s."""
    flat = mask.T.ravel().astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], edges])).tolist()


def test_rle_string_decoding() -> None:
    assert rle_string_to_counts("3243M") == [3, 2, 4, 5, 1]  # the last two are deltas to counts[i - 2]
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3000, 40).tolist()
    assert rle_string_to_counts(rle_encode_string(counts)) == counts
    with pytest.raises(ValueError, match="ends inside a count"):
        rle_string_to_counts("3c")  # 'c' = 51 - 48 has the continuation bit


def test_rle_decode_is_column_major() -> None:
    np.testing.assert_array_equal(rle_decode([1, 2, 3], 2, 3), [[0, 1, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="expected 2x3"):
        rle_decode([1, 2], 2, 3)


def _instances(tmp_path, annotations: list[dict], **extra) -> str:
    names = benchmark_classes("coco_object")
    data = {
        "images": [
            {"id": 7, "file_name": "000000000007.jpg", "height": 5, "width": 6},
            {"id": 9, "file_name": "000000000009.jpg", "height": 3, "width": 4},
        ],
        "annotations": annotations,
        "categories": [{"id": cid, "name": names[COCO_THING_IDS.index(cid) + 1]} for cid in (1, 13, 90)],
        **extra,
    }
    path = tmp_path / "instances_val2017.json"
    path.write_text(json.dumps(data))
    return str(path)


def _coco_annotations() -> list[dict]:
    brush = np.zeros((5, 6), bool)
    brush[2:4, 3:5] = True  # overlaps the person's lower right corner
    crowd = np.zeros((5, 6), bool)
    crowd[0:2, 0:2] = True  # (1, 1) is the person's
    person = [[1, 1, 3, 1, 3, 2, 1, 2]]  # PIL fills x 1..3, y 1..2, vertices included
    rle = {"size": [5, 6], "counts": rle_encode_string(mask_to_counts(brush))}
    return [
        {"id": 1, "image_id": 7, "category_id": 1, "segmentation": person, "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 90, "segmentation": rle, "iscrowd": 0},
        {
            "id": 3,
            "image_id": 7,
            "category_id": 13,
            "iscrowd": 1,
            "segmentation": {"size": [5, 6], "counts": mask_to_counts(crowd)},
        },
    ]


EXPECTED_IGNORE = [
    [255, 255, 0, 0, 0, 0],
    [255, 1, 1, 1, 0, 0],
    [0, 1, 1, 80, 80, 0],
    [0, 0, 0, 80, 80, 0],
    [0, 0, 0, 0, 0, 0],
]
EXPECTED_DEFAULT = [  # the peers' masks: crowd labelled (12), pycocotools fills the person at x 1..2, y 1
    [12, 12, 0, 0, 0, 0],
    [12, 12, 1, 0, 0, 0],
    [0, 0, 0, 80, 80, 0],
    *EXPECTED_IGNORE[3:],
]


@pytest.mark.parametrize(
    ("crowd", "first_rows"),
    [
        ("ignore", EXPECTED_IGNORE[:2]),
        ("label", [[12, 12, 0, 0, 0, 0], [12, 12, 1, 1, 0, 0]]),  # painted last, over the person
        ("skip", [[0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 0, 0]]),
    ],
)
def test_coco_object_exact_pixels(tmp_path, crowd: str, first_rows: list[list[int]]) -> None:
    src = _instances(tmp_path, _coco_annotations())
    out = tmp_path / "coco_stuff164k"
    argv = ["coco_object", "--src", src, "--out", str(out), "--crowd", crowd, "--decoder", "pil", "--quiet"]
    assert main(argv) == 0
    folder = out / "annotations" / "val2017"
    labels = np.asarray(Image.open(folder / "000000000007_instanceTrainIds.png"))
    np.testing.assert_array_equal(
        labels, first_rows + EXPECTED_IGNORE[2:]
    )  # the toothbrush (80) painted last
    empty = np.asarray(Image.open(folder / "000000000009_instanceTrainIds.png"))
    assert empty.shape == (3, 4) and not empty.any()


def test_coco_object_loads_as_benchmark_and_refuses_overwrite(tmp_path, capsys) -> None:
    src = _instances(tmp_path, _coco_annotations())
    out = tmp_path / "coco_stuff164k"
    for name, (w, h) in (("000000000007", (6, 5)), ("000000000009", (4, 3))):
        (out / "images" / "val2017").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h)).save(out / "images" / "val2017" / f"{name}.jpg")
    assert main(["coco_object", "--src", src, "--out", str(out), "--quiet"]) == 0
    ds = build_eval_dataset("coco_object", tmp_path)
    np.testing.assert_array_equal(ds[0]["mask"].numpy(), EXPECTED_DEFAULT)
    target = out / "annotations" / "val2017" / "000000000007_instanceTrainIds.png"
    target.write_bytes(b"keep me")
    capsys.readouterr()
    assert main(["coco_object", "--src", src, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: ") and "output exists; pass --overwrite" in err and len(err.splitlines()) == 1
    )
    assert target.read_bytes() == b"keep me"
    assert main(["coco_object", "--src", src, "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert np.asarray(Image.open(target)).shape == (5, 6)


def test_coco_object_default_matches_peers(tmp_path, capsys) -> None:
    """Default masks: no 255 anywhere, crowd pixels carry their class, and every pixel equals painting
    `pycocotools.coco.COCO.annToMask` of each annotation in file order."""
    coco_api = pytest.importorskip("pycocotools.coco")
    src = _instances(tmp_path, _coco_annotations())
    written = convert_coco_object(tmp_path / "instances_val2017.json", tmp_path / "out", quiet=True)
    labels = np.asarray(Image.open(written[0]))
    coco = coco_api.COCO(src)
    expected = np.zeros((5, 6), np.uint8)
    for ann in coco.dataset["annotations"]:
        expected[coco.annToMask(ann).astype(bool)] = COCO_THING_IDS.index(ann["category_id"]) + 1
    crowd = coco.annToMask(coco.dataset["annotations"][2]).astype(bool)
    assert (labels != 255).all() and crowd.sum() == 4 and (labels[crowd] == 12).all()
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(labels, EXPECTED_DEFAULT)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "instances_val2017.json: not found; expected a COCO instances json"),
        ("{not json", "instances_val2017.json: not valid JSON"),
        ('{"images": []}', "expected a COCO instances json object with 'images' and 'annotations' lists"),
        ("bad_category", r"annotations\[0\] \(id 1\): category_id 12; expected a COCO thing id"),
        ("bad_rle", r"annotations\[0\] \(id 5\): RLE size \[4, 4\]; expected \[height, width\] = \[5, 6\]"),
        ("bad_name", "category id 1 is 'human'; expected 'person'"),
    ],
)
def test_coco_object_bad_input_is_one_clear_line(tmp_path, capsys, content: str | None, message: str) -> None:
    src = tmp_path / "instances_val2017.json"
    if content == "bad_category":
        _instances(tmp_path, [{"id": 1, "image_id": 7, "category_id": 12, "segmentation": []}])
    elif content == "bad_rle":
        _instances(
            tmp_path,
            [{"id": 5, "image_id": 7, "category_id": 1, "segmentation": {"size": [4, 4], "counts": [16]}}],
        )
    elif content == "bad_name":
        _instances(tmp_path, [], categories=[{"id": 1, "name": "human"}])
    elif content is not None:
        src.write_text(content)
    assert main(["coco_object", "--src", str(src), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()  # checked before writing anything


def test_context_labelmap_mapping() -> None:
    classes = benchmark_classes("context60")
    label_map = np.array([[0, 2, 9, 458], [1, 397, 284, 459]], dtype=np.uint16)
    got = labelmap_to_context60(label_map)
    # 1 (accordion) and 459 (wool) are not among the 59: background, like unlabeled 0
    assert [classes[v] for v in got.ravel()] == [
        "background", "aeroplane", "bag", "wood", "background", "table", "person", "background",
    ]  # fmt: skip
    assert len(CONTEXT59_IDS) == 59 and list(CONTEXT59_IDS) == sorted(CONTEXT59_IDS)
    with pytest.raises(ConversionError, match="LabelMap values 0..460; expected 0..459"):
        labelmap_to_context60(np.array([[0, 460]]))


def _context_src(tmp_path, sio) -> tuple:
    src = tmp_path / "PASCAL-Context"
    (src / "trainval").mkdir(parents=True)
    maps = {
        "2008_000002": np.array([[0, 2, 2], [1, 397, 458]], dtype=np.uint16),
        "2008_000003": np.array([[284, 284], [0, 9], [9, 9]], dtype=np.uint16),
    }
    for key, label_map in maps.items():
        sio.savemat(src / "trainval" / f"{key}.mat", {"LabelMap": label_map})
    names = dict(zip(CONTEXT59_IDS, benchmark_classes("context59"), strict=True)) | {1: "accordion"}
    (src / "labels.txt").write_text("".join(f"{i}: {n}\n" for i, n in sorted(names.items())))
    official59 = ["aeroplane", "bicycle", "diningtable", "bedcloth", "clothes"]  # another order and spellings
    rest = [
        n
        for n in benchmark_classes("context59")
        if n not in {"aeroplane", "bicycle", "table", "bedclothes", "cloth"}
    ]
    (src / "59_labels.txt").write_text("".join(f"{i + 1}: {n}\n" for i, n in enumerate(official59 + rest)))
    return src, maps


def test_context_from_mat_files_exact_pixels(tmp_path) -> None:
    sio = pytest.importorskip("scipy.io")
    src, maps = _context_src(tmp_path, sio)
    split = tmp_path / "val_ids.txt"
    split.write_text("2008_000003\n2008_000002\n")
    voc2010 = tmp_path / "VOCdevkit" / "VOC2010"
    argv = [
        "context",
        "--src",
        str(src / "trainval"),
        "--out",
        str(voc2010),
        "--split-list",
        str(split),
        "--quiet",
    ]
    assert main(argv) == 0
    masks = voc2010 / "SegmentationClassContext"
    np.testing.assert_array_equal(np.asarray(Image.open(masks / "2008_000002.png")), [[0, 1, 1], [0, 50, 59]])
    np.testing.assert_array_equal(
        np.asarray(Image.open(masks / "2008_000003.png")), [[37, 37], [0, 2], [2, 2]]
    )
    assert (voc2010 / "ImageSets/SegmentationContext/val.txt").read_text() == "2008_000003\n2008_000002\n"
    (voc2010 / "JPEGImages").mkdir()
    for key, label_map in maps.items():
        Image.new("RGB", label_map.shape[::-1]).save(voc2010 / "JPEGImages" / f"{key}.jpg")
    ds60, ds59 = build_eval_dataset("context60", tmp_path), build_eval_dataset("context59", tmp_path)
    assert ds60.classes[37] == "person" and ds59[0]["mask"].tolist() == [[36, 36], [255, 1], [1, 1]]
    assert main(argv) == 2  # outputs exist


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("labels", r"labels.txt: id 397 is 'tablecloth'; expected 'table'"),
        ("labels59", r"59_labels.txt: names \['sun'\] not in the 59 classes"),
        ("garbage_mat", r"2008_000002.mat: cannot read as a MATLAB .mat file"),
        ("no_labelmap", r"2008_000002.mat: no LabelMap variable \(found \['S'\]\)"),
        ("split", r"val_ids.txt: 1 of 2 ids have no .mat in .*, e.g. .*2010_999999.mat"),
    ],
)
def test_context_bad_input_is_one_clear_line(tmp_path, capsys, breakage: str, message: str) -> None:
    sio = pytest.importorskip("scipy.io")
    src, _ = _context_src(tmp_path, sio)
    argv = ["context", "--src", str(src), "--out", str(tmp_path / "VOC2010"), "--quiet"]
    if breakage == "labels":
        text = (src / "labels.txt").read_text().replace("397: table\n", "397: tablecloth\n")
        (src / "labels.txt").write_text(text)
    elif breakage == "labels59":
        (src / "59_labels.txt").write_text((src / "59_labels.txt").read_text().replace("wood", "sun"))
    elif breakage == "garbage_mat":
        (src / "trainval" / "2008_000002.mat").write_bytes(b"MATLAB 5.0 MAT-file, garbage" * 3)
    elif breakage == "no_labelmap":
        sio.savemat(src / "trainval" / "2008_000002.mat", {"S": np.zeros((2, 2))})
    else:
        (tmp_path / "val_ids.txt").write_text("2008_000002\n2010_999999\n")
        argv += ["--split-list", str(tmp_path / "val_ids.txt")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert re.search(message, err), err


def test_context_without_scipy_says_so(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "trainval").mkdir()
    (tmp_path / "trainval" / "2008_000002.mat").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # import scipy.io raises ImportError
    assert main(["context", "--src", str(tmp_path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "needs scipy (pip install scipy)" in capsys.readouterr().err


def test_missing_src_and_module_entry_point(tmp_path, capsys) -> None:
    assert main(["context", "--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert (
        f"error: {tmp_path / 'nope'}: not found; expected the Pascal Context trainval/"
        in capsys.readouterr().err
    )
    run = subprocess.run(
        [sys.executable, "-m", "synseg.data.convert", "coco_object", "--help"], capture_output=True, text=True
    )
    assert run.returncode == 0 and all(f in run.stdout for f in ("--crowd", "--decoder", "--overwrite"))


def test_coco_object_error_after_some_masks_says_so(tmp_path, capsys) -> None:
    bad = {"id": 4, "image_id": 9, "category_id": 1, "segmentation": {"size": [3, 4], "counts": [5]}}
    src = _instances(tmp_path, [bad])
    assert main(["coco_object", "--src", src, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "image 000000000009.jpg, annotation id 4: RLE counts sum to 5" in err
    assert "(1 mask(s) already written; fix the input and rerun with --overwrite)" in err
