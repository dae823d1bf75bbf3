"""COCO-Object decoders: pycocotools (the peers' rasteriser, the default) against pycocotools called
directly, the PIL fallback within boundary pixels of it, degenerate polygons, the missing-pycocotools line."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from synseg.data.convert.cli import main
from synseg.data.convert.coco import segmentation_to_mask
from tests.test_convert import _coco_annotations, _instances, mask_to_counts, rle_encode_string


def _distance_to_edges(polygon: list[float], points: np.ndarray) -> np.ndarray:
    """Distance of each (x, y) point to the nearest edge of a closed polygon."""
    v = np.asarray(polygon, float).reshape(-1, 2)
    a, b = v[:, None], np.roll(v, -1, axis=0)[:, None]
    t = np.clip(((points - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1), 0, 1)
    return np.linalg.norm(points - (a + t[..., None] * (b - a)), axis=-1).min(0)


POLYGONS = [  # on an 80x100 image
    [[10.6, 8.2, 61.4, 16.4, 25.0, 67.8]],
    [[4, 4, 90, 6, 88, 72, 50, 24, 6, 74]],  # concave
    [[21, 41, 41, 41, 31, 76.4], [60, 10, 95.8, 10, 95.8, 36, 60, 36]],  # two parts
]


@pytest.mark.parametrize("polygons", POLYGONS)
def test_decoders_against_pycocotools_reference(polygons: list[list[float]]) -> None:
    """pycocotools' decoding (as COCO.annToRLE: frPyObjects, merge, decode) is what the default gives;
    PIL disagrees only on pixels within 1 px of an edge and overlaps it with IoU > 0.9."""
    api = pytest.importorskip("pycocotools.mask")
    h, w = 80, 100
    reference = api.decode(api.merge(api.frPyObjects(polygons, h, w))).astype(bool)
    np.testing.assert_array_equal(segmentation_to_mask(polygons, h, w), reference)
    pil = segmentation_to_mask(polygons, h, w, decoder="pil")
    assert (pil & reference).sum() / (pil | reference).sum() > 0.9
    ys, xs = np.nonzero(pil ^ reference)
    points = np.stack([xs, ys], axis=-1).astype(float)
    near = np.min([_distance_to_edges(p, points) for p in polygons], axis=0) if len(xs) else np.zeros(0)
    assert (near <= 1.0).all(), points[near > 1.0]  # a 2 px shift gives > 1.5
    rng = np.random.default_rng(len(polygons))
    blob = rng.random((h, w)) < 0.3
    for counts in (mask_to_counts(blob), rle_encode_string(mask_to_counts(blob))):
        rle = {"size": [h, w], "counts": counts}
        ref = api.decode(api.frPyObjects(rle, h, w) if isinstance(counts, list) else rle).astype(bool)
        np.testing.assert_array_equal(ref, blob)
        for decoder in ("pycocotools", "pil"):
            np.testing.assert_array_equal(segmentation_to_mask(rle, h, w, decoder=decoder), ref)


@pytest.mark.parametrize("decoder", ["pycocotools", "pil"])
def test_degenerate_polygons_do_not_crash(decoder: str) -> None:
    good = [0, 0, 4, 0, 4, 3]
    alone = segmentation_to_mask([good], 5, 6, decoder=decoder)
    assert alone.any()
    for segmentation in ([], [[1, 1, 4, 3]], [[2.5, 2.5]]):
        assert not segmentation_to_mask(segmentation, 5, 6, decoder=decoder).any()
    np.testing.assert_array_equal(segmentation_to_mask([[1, 1, 4, 3], good], 5, 6, decoder=decoder), alone)


def test_coco_object_decoder_flag_and_missing_pycocotools(tmp_path, capsys, monkeypatch) -> None:
    src = _instances(tmp_path, _coco_annotations())
    for decoder, out in ((None, "a"), ("pil", "b")):
        argv = ["coco_object", "--src", src, "--out", str(tmp_path / out), "--quiet"]
        assert main(argv + (["--decoder", decoder] if decoder else [])) == 0
    name = "annotations/val2017/000000000007_instanceTrainIds.png"
    person = [np.asarray(Image.open(tmp_path / out / name))[1] for out in "ab"]
    assert person[0].tolist() == [12, 12, 1, 0, 0, 0] and person[1].tolist() == [12, 12, 1, 1, 0, 0]
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # import pycocotools raises ImportError
    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)
    capsys.readouterr()
    assert main(["coco_object", "--src", src, "--out", str(tmp_path / "c"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "pip install pycocotools" in err and "--decoder pil" in err
    assert not (tmp_path / "c").exists()
    assert (
        main(["coco_object", "--src", src, "--out", str(tmp_path / "c"), "--decoder", "pil", "--quiet"]) == 0
    )
