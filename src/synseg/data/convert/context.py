"""Pascal Context 59 (+ background) masks from the official release's 459-class `trainval/*.mat` files.

Each .mat holds `LabelMap` (uint16, H x W): 0 unlabeled, 1..459 the classes of the release's `labels.txt`
(alphabetical). The 59-class subset keeps the 459-class ids below, in increasing id order, as labels 1..59;
everything else (unlabeled and the other 400 classes) is label 0, background. That is exactly what mmseg's
tools/dataset_converters/pascal_context.py writes through the Detail API (its `_mapping`), and its order is
mmseg's (1.x) PascalContextDataset class tuple, our `context59.txt`. The release's `labels.txt` and
`59_labels.txt`, when found, are checked against it (`59_labels.txt` lists the same classes in another order
and with a few other spellings, e.g. diningtable for table, so it is used as a check, never as the order)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from synseg.data.benchmarks.layouts import benchmark_classes
from synseg.data.convert.io import ConversionError, check_free, partial_note, progress, write_lines, write_png

# The 459-class ids of the 59 classes (mmseg's `_mapping` without 0, sorted): label k + 1 is CONTEXT59_IDS[k].
CONTEXT59_IDS = (
    2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115,
    144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349,
    354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458,
)  # fmt: skip
N_FULL = 459
MASK_DIR = "SegmentationClassContext"
SPLIT_DIR = "ImageSets/SegmentationContext"
# Other spellings of the 59 names (in 59_labels.txt and prompt lists), after _norm.
_ALIASES = {"diningtable": "table", "bedcloth": "bedclothes", "clothes": "cloth", "tv": "tvmonitor"}


def _norm(name: str) -> str:
    key = re.sub(r"[\s_\-]+", "", name.lower())
    return _ALIASES.get(key, key)


def context59_lut() -> np.ndarray:
    """(460,) uint8: 459-class LabelMap value -> Pascal Context 60 label (0 background, 1..59)."""
    lut = np.zeros(N_FULL + 1, dtype=np.uint8)
    lut[list(CONTEXT59_IDS)] = np.arange(1, len(CONTEXT59_IDS) + 1, dtype=np.uint8)
    return lut


def labelmap_to_context60(label_map: np.ndarray, source: Path | str = "LabelMap") -> np.ndarray:
    """A 459-class LabelMap (H, W) -> uint8 labels 0 (background) .. 59; values above 459 are an error."""
    if label_map.ndim != 2 or label_map.dtype.kind not in "ui":
        raise ConversionError(
            f"{source}: LabelMap is {label_map.dtype} {label_map.shape}; expected a 2-D integer array"
        )
    if label_map.size and (label_map.min() < 0 or label_map.max() > N_FULL):
        raise ConversionError(
            f"{source}: LabelMap values {int(label_map.min())}..{int(label_map.max())}; expected 0..{N_FULL} "
            "(0 unlabeled, 1..459 the classes of labels.txt)"
        )
    return context59_lut()[label_map.astype(np.intp)]


def read_id_names(path: Path) -> dict[int, str]:
    """`<id>: <name>` lines (the release's labels.txt / 59_labels.txt) -> {id: name}."""
    out: dict[int, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        m = re.match(r"^\s*(\d+)\s*:?\s*(\S.*?)\s*$", line)
        if not m:
            raise ConversionError(f"{path}:{n}: {line.strip()!r}; expected '<id>: <name>'")
        out[int(m.group(1))] = m.group(2)
    return out


def check_label_lists(labels: Path | None, labels59: Path | None) -> None:
    """Check the release's name lists against CONTEXT59_IDS and context59.txt (a different release's ids would
    silently scramble the classes)."""
    ours = benchmark_classes("context59")
    if labels is not None:
        names = read_id_names(labels)
        for cid, expected in zip(CONTEXT59_IDS, ours, strict=True):
            got = names.get(cid)
            if got is None or _norm(got) != _norm(expected):
                raise ConversionError(
                    f"{labels}: id {cid} is {got!r}; expected {expected!r} (the 459-class list of the "
                    "official Pascal Context release, whose ids the .mat LabelMaps use)"
                )
    if labels59 is not None:
        given = {_norm(n) for n in read_id_names(labels59).values()}
        want = {_norm(n) for n in ours}
        if given != want:
            raise ConversionError(
                f"{labels59}: names {sorted(given - want)[:5]} not in the 59 classes and "
                f"{sorted(want - given)[:5]} missing; expected the official 59-class subset"
            )


def _find_mats(src: Path) -> tuple[Path, list[Path]]:
    if not src.exists():
        raise ConversionError(
            f"{src}: not found; expected the Pascal Context trainval/ folder of *.mat files"
        )
    folder = src / "trainval" if (src / "trainval").is_dir() else src
    if not folder.is_dir():
        raise ConversionError(
            f"{src}: not a folder; expected the Pascal Context trainval/ folder of *.mat files"
        )
    mats = sorted(folder.glob("*.mat"))
    if not mats:
        raise ConversionError(f"{folder}: no *.mat files; expected the Pascal Context trainval/ annotations")
    return folder, mats


def _near(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder.parent / name):
        if candidate.is_file():
            return candidate
    return None


def read_label_map(path: Path) -> np.ndarray:
    """The `LabelMap` array of a Pascal Context .mat file (needs scipy)."""
    try:
        from scipy.io import loadmat
    except ImportError as err:
        raise ConversionError(
            "reading Pascal Context .mat files needs scipy (pip install scipy); it is not installed"
        ) from err
    try:
        mat = loadmat(path)
    except Exception as err:  # scipy raises ValueError, TypeError, OSError, ... for a bad file
        raise ConversionError(
            f"{path}: cannot read as a MATLAB .mat file ({type(err).__name__}: {err}); "
            "expected a Pascal Context annotation with a LabelMap array"
        ) from err
    if "LabelMap" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ConversionError(
            f"{path}: no LabelMap variable (found {found}); expected a Pascal Context annotation"
        )
    return np.asarray(mat["LabelMap"])


def convert_context(
    src: Path,
    out: Path,
    split_list: Path | None = None,
    split_name: str = "val",
    labels: Path | None = None,
    labels59: Path | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> list[Path]:
    """Write out/SegmentationClassContext/<id>.png for every .mat (or every id of `split_list`), and with a
    split list out/ImageSets/SegmentationContext/<split_name>.txt; returns the masks written."""
    folder, mats = _find_mats(src)
    for given, what in ((labels, "labels.txt"), (labels59, "59_labels.txt"), (split_list, "split list")):
        if given is not None and not given.is_file():
            raise ConversionError(f"{given}: not found; expected the {what}")
    check_label_lists(labels or _near(folder, "labels.txt"), labels59 or _near(folder, "59_labels.txt"))
    by_id = {p.stem: p for p in mats}
    ids = sorted(by_id)
    if split_list is not None:
        ids = [line.strip() for line in split_list.read_text(encoding="utf-8").splitlines() if line.strip()]
        lost = [i for i in ids if i not in by_id]
        if not ids or lost:
            example = f", e.g. {folder / (lost[0] + '.mat')}" if lost else ""
            raise ConversionError(
                f"{split_list}: {len(lost)} of {len(ids)} ids have no .mat in {folder}{example}; "
                "expected one image id per line, each with a <id>.mat"
            )
    targets = [out / MASK_DIR / f"{i}.png" for i in ids]
    split_out = out / SPLIT_DIR / f"{split_name}.txt" if split_list is not None else None
    check_free(targets + ([split_out] if split_out else []), overwrite)
    jobs = list(zip(ids, targets, strict=True))
    for done, (image_id, target) in enumerate(progress(jobs, "context masks", quiet)):
        source = by_id[image_id]
        try:
            labels = labelmap_to_context60(read_label_map(source), source)
        except ConversionError as err:
            raise ConversionError(f"{err}{partial_note(done)}") from err
        write_png(target, labels)
    if split_out is not None:
        write_lines(split_out, ids)
    return targets
