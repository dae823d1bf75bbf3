"""Where each zero-shot benchmark keeps its files (the layouts of mmseg's usual conversions) and what its mask
values mean: one `BenchmarkSpec` per name, the class lists, and the discovery that pairs images with masks or
says, in one message, what is missing."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import as_file, files
from pathlib import Path

from synseg.data.benchmarks.segfolder import IMAGE_SUFFIXES, read_classes
from synseg.errors import DataFileError

_SPLIT_NOTE = "one <id> per line"


@dataclass(frozen=True)
class Sample:
    """One (image, mask) pair; `key` names it in reports (the split id or the image stem)."""

    key: str
    image: Path
    mask: Path


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark's files under DATA_ROOT and its label convention.

    `reduce_zero_label`: file value 0 (background / "other") becomes 255 and k becomes k - 1 (mmseg's
    reduce_zero_label), for the no-background variants. `subdir == ""` means the root is the dataset itself
    (`folder`, `toy`), whose classes come from its classes.txt instead of a packaged list."""

    name: str
    subdir: str
    image_dir: str
    mask_dir: str
    image_suffix: str | None  # None: any of IMAGE_SUFFIXES (folder layout)
    mask_suffix: str
    split_file: str | None = None  # relative to the dataset folder; None lists image_dir
    nested: bool = False  # images and masks one folder deeper (Cityscapes cities)
    reduce_zero_label: bool = False
    has_background: bool = False
    labels: str = ""  # what the file values mean, for messages
    hint: str = ""  # how to make the files, for messages

    @property
    def packaged_classes(self) -> bool:
        return bool(self.subdir)


_VOC = dict(
    subdir="VOCdevkit/VOC2012",
    image_dir="JPEGImages",
    mask_dir="SegmentationClass",
    image_suffix=".jpg",
    mask_suffix=".png",
    split_file="ImageSets/Segmentation/val.txt",
    labels="palette PNG, index = label: 0 background, 1..20 classes, 255 void",
    hint="the VOC2012 trainval tar unpacks into VOCdevkit/VOC2012",
)
_CONTEXT = dict(
    subdir="VOCdevkit/VOC2010",
    image_dir="JPEGImages",
    mask_dir="SegmentationClassContext",
    image_suffix=".jpg",
    mask_suffix=".png",
    split_file="ImageSets/SegmentationContext/val.txt",
    labels="0 background (every class outside the 59), 1..59 classes (mmseg order)",
    hint="write the masks with `python -m synseg.data.convert context --src <trainval folder> "
    "--out DATA_ROOT/VOCdevkit/VOC2010 --split-list <val ids>`",
)
_COCO = dict(
    subdir="coco_stuff164k", image_dir="images/val2017", mask_dir="annotations/val2017", image_suffix=".jpg"
)
_COCO_OBJECT_HINT = (
    "write the masks with `python -m synseg.data.convert coco_object --src instances_val2017.json "
    "--out DATA_ROOT/coco_stuff164k`"
)
_FOLDER = dict(subdir="", image_dir="images", mask_dir="masks", image_suffix=None, mask_suffix=".png")

BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec("voc21", has_background=True, **_VOC),
        BenchmarkSpec("voc20", reduce_zero_label=True, **_VOC),
        BenchmarkSpec("context60", has_background=True, **_CONTEXT),
        BenchmarkSpec("context59", reduce_zero_label=True, **_CONTEXT),
        BenchmarkSpec(
            "coco_object",
            mask_suffix="_instanceTrainIds.png",
            has_background=True,
            labels="0 background, 1..80 COCO things (category-id order), 255 ignore",
            hint=_COCO_OBJECT_HINT,
            **_COCO,
        ),
        BenchmarkSpec(
            "coco_stuff",
            mask_suffix="_labelTrainIds.png",
            labels="0..170 (things then stuff), 255 unlabeled",
            hint="mmseg's tools/dataset_converters/coco_stuff164k.py writes *_labelTrainIds.png",
            **_COCO,
        ),
        BenchmarkSpec(
            "cityscapes",
            subdir="cityscapes",
            image_dir="leftImg8bit/val",
            mask_dir="gtFine/val",
            image_suffix="_leftImg8bit.png",
            mask_suffix="_gtFine_labelTrainIds.png",
            nested=True,
            labels="train ids 0..18, 255 ignore",
            hint="cityscapesscripts' createTrainIdLabelImgs writes *_gtFine_labelTrainIds.png",
        ),
        BenchmarkSpec(
            "ade20k",
            subdir="ADEChallengeData2016",
            image_dir="images/validation",
            mask_dir="annotations/validation",
            image_suffix=".jpg",
            mask_suffix=".png",
            reduce_zero_label=True,
            labels="0 other (ignored), 1..150 classes",
            hint="ADEChallengeData2016.zip unpacks as is",
        ),
        BenchmarkSpec(
            "folder",
            labels="label = line of classes.txt (0-based), 255 ignore; first line `background`: has one",
            **_FOLDER,
        ),
        BenchmarkSpec(
            "toy",
            labels="label = line of classes.txt (0-based), 255 ignore",
            hint="`make toy-data` writes data/toy/val and data/toy/test",
            **_FOLDER,
        ),
        BenchmarkSpec(
            "toy_dev",
            labels="label = line of classes.txt (0-based), 255 ignore",
            hint="`make toy-data` writes data/toy/dev (the tuning split: stand-ins and recipes, never test)",
            **_FOLDER,
        ),
        BenchmarkSpec(
            "toy_ood",
            labels="label = line of classes.txt (0-based), 255 ignore",
            hint="`make toy-data` writes data/toy/ood (shifted settings, docs/toyworld.md)",
            **_FOLDER,
        ),
    )
}


def benchmark_spec(name: str) -> BenchmarkSpec:
    """The spec registered under `name`; an unknown name is a ValueError listing the known ones."""
    if name not in BENCHMARKS:
        raise DataFileError(f"unknown benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


@cache
def _packaged_classes(name: str) -> tuple[str, ...]:
    resource = files("synseg.data") / "resources" / "benchmarks" / f"{name}.txt"
    with as_file(resource) as path:
        return tuple(read_classes(Path(path)))


def benchmark_classes(name: str, root: str | Path | None = None) -> list[str]:
    """Class names of a benchmark, index = label id (packaged lists; `folder`/`toy` read root/classes.txt)."""
    spec = benchmark_spec(name)
    if spec.packaged_classes:
        return list(_packaged_classes(name))
    if root is None:
        raise DataFileError(f"{name}: its classes are in <root>/classes.txt; pass the root")
    path = Path(root) / "classes.txt"
    classes = read_classes(path)
    if not classes:
        raise DataFileError(f"{path}: no class names; expected one name per line (line i = label i)")
    return classes


def dataset_dir(spec: BenchmarkSpec, root: Path) -> Path:
    return root / spec.subdir if spec.subdir else root


def layout_tree(spec: BenchmarkSpec, root: Path) -> str:
    """The expected files as a small tree under `root`, for error messages."""
    city = "<city>/" if spec.nested else ""
    image = f"<id>{spec.image_suffix}" if spec.image_suffix else "<id>.png|.jpg"
    lines = [f"  {dataset_dir(spec, root)}/"]
    lines.append(f"    {spec.image_dir}/{city}{image}")
    lines.append(f"    {spec.mask_dir}/{city}<id>{spec.mask_suffix}    ({spec.labels})")
    if spec.split_file:
        lines.append(f"    {spec.split_file}    ({_SPLIT_NOTE})")
    if not spec.packaged_classes:
        lines.append("    classes.txt    (one class name per line)")
    return "\n".join(lines)


def _missing_error(spec: BenchmarkSpec, root: Path, missing: list[str]) -> FileNotFoundError:
    where = "DATA_ROOT" if spec.packaged_classes else "root"
    text = [f"{spec.name}: dataset missing or incomplete under {where}={root}", "expected layout:"]
    text.append(layout_tree(spec, root))
    text.append("missing:")
    text.extend(f"  - {m}" for m in missing)
    if spec.hint:
        text.append(f"hint: {spec.hint}")
    return FileNotFoundError("\n".join(text))


def _read_split(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _list_images(spec: BenchmarkSpec, image_dir: Path) -> list[tuple[str, Path]]:
    """(key, image path) for every image file; key is the name without the image suffix."""
    if spec.image_suffix is None:
        paths = [p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        return sorted((p.stem, p) for p in paths)
    pattern = f"*/*{spec.image_suffix}" if spec.nested else f"*{spec.image_suffix}"
    cut = len(spec.image_suffix)
    return sorted((p.name[:-cut], p) for p in image_dir.glob(pattern) if p.is_file())


def _example(paths: list[Path]) -> str:
    return f"e.g. {paths[0]}" + (f" (and {len(paths) - 1} more)" if len(paths) > 1 else "")


def find_samples(spec: BenchmarkSpec, root: Path) -> list[Sample]:
    """Every (image, mask) pair of the benchmark under `root`, in split-file or sorted order.

    Raises one FileNotFoundError listing everything missing (folders, split list, classes.txt, images or masks
    named by the split), with the expected tree."""
    base = dataset_dir(spec, root)
    image_dir, mask_dir = base / spec.image_dir, base / spec.mask_dir
    if not base.is_dir():
        raise _missing_error(spec, root, [f"{base}/ (the dataset folder)"])
    missing = [f"{d}/ ({what})" for d, what in ((image_dir, "images"), (mask_dir, "masks")) if not d.is_dir()]
    split = base / spec.split_file if spec.split_file else None
    if split is not None and not split.is_file():
        missing.append(f"{split} (the split list, {_SPLIT_NOTE})")
    if not spec.packaged_classes and not (base / "classes.txt").is_file():
        missing.append(f"{base / 'classes.txt'} (class names, one per line)")
    if missing:
        raise _missing_error(spec, root, missing)

    if split is not None:
        keys = _read_split(split)
        if not keys:
            raise _missing_error(spec, root, [f"ids in {split} (the file is empty)"])
        pairs = [(k, image_dir / f"{k}{spec.image_suffix}") for k in keys]
    else:
        pairs = _list_images(spec, image_dir)
        if not pairs:
            raise _missing_error(spec, root, [f"images in {image_dir}/ (the folder is empty)"])
        stems = [k for k, _ in pairs]
        dupes = sorted({k for k in stems if stems.count(k) > 1})
        if dupes:
            raise DataFileError(
                f"{image_dir}: several images share the stem(s) {dupes[:5]}; expected one per mask"
            )

    def mask_of(key: str, image: Path) -> Path:
        folder = mask_dir / image.parent.name if spec.nested else mask_dir
        return folder / f"{key}{spec.mask_suffix}"

    samples = [Sample(k, image, mask_of(k, image)) for k, image in pairs]
    lost_images = [s.image for s in samples if not s.image.is_file()]
    lost_masks = [s.mask for s in samples if not s.mask.is_file()]
    source = f"listed in {spec.split_file}" if split is not None else f"for the images in {spec.image_dir}"
    if lost_images:
        missing.append(f"{len(lost_images)} of {len(samples)} image(s) {source}, {_example(lost_images)}")
    if lost_masks:
        missing.append(f"{len(lost_masks)} of {len(samples)} mask(s) {source}, {_example(lost_masks)}")
    if missing:
        raise _missing_error(spec, root, missing)
    return samples
