"""Convert official benchmark annotations into the layouts `synseg.data.benchmarks` reads.

    python -m synseg.data.convert context --src PASCAL_CONTEXT/trainval --out DATA_ROOT/VOCdevkit/VOC2010 \\
        --split-list val_ids.txt
    python -m synseg.data.convert coco_object --src annotations/instances_val2017.json \\
        --out DATA_ROOT/coco_stuff164k

Bad input is one `error:` line naming the file and what was expected (exit 2); existing outputs are never
replaced without --overwrite."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from synseg.data.convert.coco import CROWD_MODES, DECODERS, MASK_SUFFIX, convert_coco_object
from synseg.data.convert.context import MASK_DIR, SPLIT_DIR, convert_context
from synseg.data.convert.io import ConversionError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m synseg.data.convert", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="name", required=True, metavar="NAME")

    ctx = sub.add_parser(
        "context",
        help="Pascal Context 59+bg masks from the official 459-class trainval/*.mat",
        description=f"Write OUT/{MASK_DIR}/<id>.png (0 background, 1..59 in mmseg's order) from the official "
        f"459-class trainval/*.mat files, and OUT/{SPLIT_DIR}/<split-name>.txt with --split-list. labels.txt "
        "and 59_labels.txt, found beside the .mat folder or given, are checked against the built-in mapping.",
    )
    ctx.add_argument(
        "--src", type=Path, required=True, help="trainval/ folder of *.mat files (or its parent)"
    )
    ctx.add_argument(
        "--out", type=Path, required=True, help="the VOC2010 folder (DATA_ROOT/VOCdevkit/VOC2010)"
    )
    ctx.add_argument(
        "--split-list", type=Path, help="ids to convert, one per line; also written as the split"
    )
    ctx.add_argument("--split-name", default="val", help="split file name under ImageSets (default: val)")
    ctx.add_argument(
        "--labels", type=Path, help="the release's 459-class labels.txt (default: found near --src)"
    )
    ctx.add_argument("--labels59", type=Path, help="the release's 59_labels.txt (default: found near --src)")

    coco = sub.add_parser(
        "coco_object",
        help="COCO-Object masks from instances_<split>.json",
        description=f"Write OUT/annotations/<split>/<stem>{MASK_SUFFIX} (0 background, 1..80 in COCO "
        "category id order) from COCO instance annotations (polygons and RLE). The defaults match the peers' "
        "masks (GroupViT/TCL/NACLIP, from the COCO-Stuff pixel maps): no ignore pixels, crowd regions carry "
        "their class, pycocotools' rasteriser.",
    )
    coco.add_argument("--src", type=Path, required=True, help="instances json, e.g. instances_val2017.json")
    coco.add_argument(
        "--out", type=Path, required=True, help="the COCO-Stuff folder (DATA_ROOT/coco_stuff164k)"
    )
    coco.add_argument("--split", default="val2017", help="annotation sub-folder (default: val2017)")
    coco.add_argument(
        "--crowd",
        choices=CROWD_MODES,
        default="label",
        help="crowd regions: label (their class; default, as the peers), ignore (255, never over an "
        "instance) or skip (left background)",
    )
    coco.add_argument(
        "--decoder",
        choices=DECODERS,
        default="pycocotools",
        help="polygon/RLE rasteriser: pycocotools (default, as the peers; pip install pycocotools) or pil "
        "(no pycocotools; polygon boundaries can differ by a pixel)",
    )
    for p in (ctx, coco):
        p.add_argument("--overwrite", action="store_true", help="replace existing output files")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one converter; returns the exit status (0 ok, 2 bad input or refused output)."""
    args = build_parser().parse_args(argv)
    try:
        if args.name == "context":
            written = convert_context(
                args.src,
                args.out,
                split_list=args.split_list,
                split_name=args.split_name,
                labels=args.labels,
                labels59=args.labels59,
                overwrite=args.overwrite,
                quiet=args.quiet,
            )
        else:
            written = convert_coco_object(
                args.src,
                args.out,
                split=args.split,
                crowd=args.crowd,
                decoder=args.decoder,
                overwrite=args.overwrite,
                quiet=args.quiet,
            )
    except ConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    where = written[0].parent if written else args.out
    print(f"{args.name}: wrote {len(written)} mask(s) to {where}", file=sys.stderr)
    return 0
