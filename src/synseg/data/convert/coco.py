"""COCO-Object masks (`<stem>_instanceTrainIds.png`) from COCO's instance annotations.

Labels: 0 background, 1..80 the things in increasing COCO category id (GroupViT's COCO-Object, whose
`clsID_to_trID` maps the stuff-thing maps the same way). The defaults match the peers' masks (GroupViT, TCL
and NACLIP take them from the COCO-Stuff 164k pixel maps): every non-object pixel is background 0, there are
no ignore pixels, crowd regions carry their class (`crowd="label"`) and masks come from pycocotools'
rasteriser (`decoder="pycocotools"`, imported only when used). Options: `crowd="ignore"` writes crowd
regions as 255 (never over a labelled instance), `crowd="skip"` leaves them background (cocostuffapi's
default `includeCrowd=False`); `decoder="pil"` needs no pycocotools: polygons are filled with PIL, so
boundary pixels can differ from pycocotools' by one, and RLE (list or compressed string counts) is decoded
exactly by the code here. Overlaps: annotations are painted in file order, a later one over an earlier one
(cocostuffapi's `cocoSegmentationToSegmentationMap`). Polygons with fewer than 3 points are skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from synseg.data.benchmarks.layouts import benchmark_classes
from synseg.data.convert.io import ConversionError, check_free, partial_note, progress, write_png

# COCO's 80 thing category ids; label k + 1 is COCO_THING_IDS[k].
COCO_THING_IDS = tuple(i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83})
MASK_SUFFIX = "_instanceTrainIds.png"
CROWD_MODES = ("label", "ignore", "skip")
DECODERS = ("pycocotools", "pil")
IGNORE = 255


def rle_string_to_counts(s: str) -> list[int]:
    """Decode COCO's compressed RLE string (pycocotools' rleFrString): 5-bit groups offset by 48, a
    continuation bit 0x20, a sign bit 0x10, and counts after the second stored as deltas to counts[i - 2]."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError("compressed RLE string ends inside a count")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {s[p]!r} at {p} is not a compressed RLE digit")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _checked_runs(counts: list[int], height: int, width: int) -> np.ndarray:
    """RLE `counts` as int64 runs, refused unless non-negative and summing to height * width."""
    runs = np.asarray(counts, dtype=np.int64)
    if (runs < 0).any() or int(runs.sum()) != height * width:
        raise ValueError(f"RLE counts sum to {int(runs.sum())} (or are negative); expected {height}x{width}")
    return runs


def rle_decode(counts: list[int], height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of RLE `counts`: alternating runs of 0s and 1s, starting with 0s, column-major."""
    runs = _checked_runs(counts, height, width)
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    return np.repeat(values, runs).reshape(width, height).T


def _mask_api() -> Any:
    """pycocotools.mask, imported on first use so that `decoder="pil"` works without it."""
    try:
        from pycocotools import mask
    except ImportError as err:
        raise ConversionError(
            "decoder 'pycocotools' needs pycocotools: pip install pycocotools, or pass --decoder pil"
        ) from err
    return mask


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """(H, W) bool union of COCO polygons ([x1, y1, x2, y2, ...] in pixels), filled with PIL."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        if len(poly) % 2:
            raise ValueError(f"polygon with {len(poly)} coordinates; expected x, y pairs")
        if len(poly) >= 6:
            draw.polygon(
                [(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly), 2)], fill=1, outline=1
            )
    return np.asarray(canvas, dtype=bool)


def _rle_counts(segmentation: dict[str, Any], height: int, width: int) -> list[int]:
    """Run lengths of an RLE dict (list or compressed string counts), its size checked against the image."""
    size = segmentation.get("size")
    if list(size or []) != [height, width]:
        raise ValueError(f"RLE size {size}; expected [height, width] = [{height}, {width}] of its image")
    counts = segmentation["counts"]
    if isinstance(counts, str | bytes):
        return rle_string_to_counts(counts.decode("ascii") if isinstance(counts, bytes) else counts)
    return counts


def _pycocotools_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask as `pycocotools.coco.COCO.annToMask` makes it (polygons merged, RLE decoded)."""
    api = _mask_api()
    if isinstance(segmentation, list):
        if any(len(poly) % 2 for poly in segmentation):
            raise ValueError("polygon with an odd number of coordinates; expected x, y pairs")
        polygons = [[float(v) for v in poly] for poly in segmentation if len(poly) >= 6]
        if not polygons:  # frPyObjects reads 4 numbers as a box and fails on an empty list
            return np.zeros((height, width), dtype=bool)
        rle = api.merge(api.frPyObjects(polygons, height, width))
    else:
        counts = segmentation["counts"]
        _checked_runs(_rle_counts(segmentation, height, width), height, width)  # pycocotools doesn't check
        if isinstance(counts, list):
            rle = api.frPyObjects(
                {"size": [height, width], "counts": [int(c) for c in counts]}, height, width
            )
        else:
            rle = {"size": [height, width], "counts": counts}
    return np.ascontiguousarray(api.decode(rle), dtype=bool)


def segmentation_to_mask(
    segmentation: Any, height: int, width: int, decoder: str = "pycocotools"
) -> np.ndarray:
    """(H, W) bool mask of an annotation's `segmentation`: polygons, or RLE with list or string counts,
    rasterised by pycocotools (the peers' masks) or by PIL and the RLE code here (`decoder="pil"`)."""
    if not isinstance(segmentation, list) and not (
        isinstance(segmentation, dict) and "counts" in segmentation
    ):
        raise ValueError("segmentation is neither a list of polygons nor an RLE dict with counts")
    if decoder == "pycocotools":
        return _pycocotools_mask(segmentation, height, width)
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, height, width)
    return rle_decode(_rle_counts(segmentation, height, width), height, width)


def _segmentation_problem(segmentation: Any, height: int, width: int) -> str:
    """What is structurally wrong with a segmentation ("" if nothing), checked before any mask is written."""
    if isinstance(segmentation, list):
        if not all(isinstance(p, list) and len(p) % 2 == 0 for p in segmentation):
            return "segmentation polygons must be lists of x, y pairs"
        return ""
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        return "segmentation is neither a list of polygons nor an RLE dict with counts"
    if list(segmentation.get("size") or []) != [height, width]:
        size = segmentation.get("size")
        return f"RLE size {size}; expected [height, width] = [{height}, {width}] of its image"
    if not isinstance(segmentation["counts"], list | str | bytes):
        return "RLE counts must be a list of run lengths or a compressed string"
    return ""


def load_instances(path: Path) -> dict[str, Any]:
    """Read and check a COCO instances json (images, annotations, categories)."""
    if not path.is_file():
        raise ConversionError(
            f"{path}: not found; expected a COCO instances json (e.g. instances_val2017.json)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConversionError(f"{path}: not valid JSON ({err}); expected a COCO instances json") from err
    if not isinstance(data, dict) or any(
        not isinstance(data.get(k), list) for k in ("images", "annotations")
    ):
        raise ConversionError(
            f"{path}: expected a COCO instances json object with 'images' and 'annotations' lists"
        )
    names = benchmark_classes("coco_object")[1:]
    for i, cat in enumerate(data.get("categories") or []):
        cid = cat.get("id") if isinstance(cat, dict) else None
        if cid not in COCO_THING_IDS:
            raise ConversionError(
                f"{path}: categories[{i}] has id {cid!r}; expected one of COCO's 80 thing ids"
            )
        expected = names[COCO_THING_IDS.index(cid)]
        if cat.get("name", expected) != expected:
            raise ConversionError(f"{path}: category id {cid} is {cat.get('name')!r}; expected {expected!r}")
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or not all(k in im for k in ("id", "file_name", "height", "width")):
            raise ConversionError(f"{path}: images[{i}] lacks id, file_name, height or width")
        if not all(isinstance(im[k], int) and im[k] > 0 for k in ("height", "width")):
            raise ConversionError(
                f"{path}: images[{i}] has height/width {im['height']!r}/{im['width']!r}; "
                "expected positive integers"
            )
    return data


def coco_object_mask(
    annotations: list[dict[str, Any]],
    height: int,
    width: int,
    crowd: str = "label",
    decoder: str = "pycocotools",
) -> np.ndarray:
    """(H, W) uint8 COCO-Object labels of one image's annotations (see the module doc for the conventions)."""
    labels = np.zeros((height, width), dtype=np.uint8)
    crowd_pixels = np.zeros((height, width), dtype=bool)
    covered = np.zeros((height, width), dtype=bool)
    for ann in annotations:
        is_crowd = bool(ann.get("iscrowd", 0))
        if is_crowd and crowd == "skip":
            continue
        try:
            region = segmentation_to_mask(ann["segmentation"], height, width, decoder)
        except (ValueError, TypeError) as err:
            raise ValueError(f"annotation id {ann.get('id')!r}: {err}") from err
        if is_crowd and crowd == "ignore":
            crowd_pixels |= region
            continue
        labels[region] = COCO_THING_IDS.index(ann["category_id"]) + 1
        covered |= region
    labels[crowd_pixels & ~covered] = IGNORE
    return labels


def convert_coco_object(
    src: Path,
    out: Path,
    split: str = "val2017",
    crowd: str = "label",
    decoder: str = "pycocotools",
    overwrite: bool = False,
    quiet: bool = False,
) -> list[Path]:
    """Write out/annotations/<split>/<stem>_instanceTrainIds.png for every image of the instances json `src`
    (images without annotations get an all-background mask); returns the masks written. The defaults
    (crowd regions labelled, pycocotools' rasteriser) reproduce the peers' masks."""
    if crowd not in CROWD_MODES:
        raise ConversionError(f"crowd={crowd!r}; expected one of {', '.join(CROWD_MODES)}")
    if decoder not in DECODERS:
        raise ConversionError(f"decoder={decoder!r}; expected one of {', '.join(DECODERS)}")
    if decoder == "pycocotools":
        _mask_api()  # missing pycocotools is one clear line before anything is read or written
    data = load_instances(src)
    images = {im["id"]: im for im in data["images"]}
    per_image: dict[Any, list[dict[str, Any]]] = {i: [] for i in images}
    for i, ann in enumerate(data["annotations"]):
        where = (
            f"{src}: annotations[{i}] (id {ann.get('id')!r})"
            if isinstance(ann, dict)
            else f"{src}: annotations[{i}]"
        )
        if not isinstance(ann, dict) or "segmentation" not in ann:
            raise ConversionError(f"{where}: no segmentation; expected a COCO instance annotation")
        if ann.get("image_id") not in images:
            raise ConversionError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        if ann.get("category_id") not in COCO_THING_IDS:
            raise ConversionError(
                f"{where}: category_id {ann.get('category_id')!r}; expected a COCO thing id"
            )
        image = images[ann["image_id"]]
        problem = _segmentation_problem(ann["segmentation"], image["height"], image["width"])
        if problem:
            raise ConversionError(f"{where}: {problem}")
        per_image[ann["image_id"]].append(ann)
    folder = out / "annotations" / split
    jobs = [(im, folder / f"{Path(im['file_name']).stem}{MASK_SUFFIX}") for im in images.values()]
    check_free([target for _, target in jobs], overwrite)
    for done, (im, target) in enumerate(progress(jobs, "coco_object masks", quiet)):
        try:
            labels = coco_object_mask(per_image[im["id"]], im["height"], im["width"], crowd, decoder)
        except ValueError as err:
            raise ConversionError(f"{src}: image {im['file_name']}, {err}{partial_note(done)}") from err
        write_png(target, labels)
    return [target for _, target in jobs]
