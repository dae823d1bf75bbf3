"""Command line for the toy world: write splits to disk, draw a sample sheet, print the reference levels.

python -m synseg.data.toy write --split test --n 200 --seed 0 --out data/toy/test
python -m synseg.data.toy write --split train --n 20000 --out data/toy/shards   # tar shards
python -m synseg.data.toy sheet --out reports/toy_samples.png
python -m synseg.data.toy stats --split val --n 300
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from synseg.data.toy import (
    SPLITS,
    generate_sample,
    write_folder,
    write_sample_sheet,
    write_shards,
)
from synseg.data.toy.reference import all_background_miou, background_fraction, patch_grid_ceiling
from synseg.data.toy.scene import split_config


def _int_at_least(low: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _int_at_least(1, "an integer >= 1")
seed_int = _int_at_least(0, "an integer >= 0")
image_size_int = _int_at_least(16, "an image size >= 16")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `python -m synseg.data.toy`."""
    parser = argparse.ArgumentParser(
        prog="python -m synseg.data.toy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    write = sub.add_parser("write", help="write a split in the folder layout or as webdataset tar shards")
    write.add_argument("--split", required=True, choices=list(SPLITS))
    write.add_argument("--n", required=True, type=positive_int, help="number of samples")
    write.add_argument("--seed", type=seed_int, default=0)
    write.add_argument("--out", required=True, help="output folder")
    write.add_argument(
        "--format",
        choices=("folder", "shards"),
        default=None,
        help="default: shards for train, folder for val/test/dense",
    )
    write.add_argument("--shard-size", type=positive_int, default=1000, help="samples per tar shard")
    write.add_argument("--image-size", type=image_size_int, default=64)
    write.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    write.add_argument("--quiet", action="store_true", help="no progress lines")

    sheet = sub.add_parser("sheet", help="save a figure of samples (image, mask, caption)")
    sheet.add_argument("--out", required=True, help="output .png")
    sheet.add_argument("--seed", type=seed_int, default=0)
    sheet.add_argument("--n", type=positive_int, default=8)
    sheet.add_argument("--split", choices=list(SPLITS), default="val")

    stats = sub.add_parser("stats", help="print scene statistics and reference mIoU levels")
    stats.add_argument("--split", choices=list(SPLITS), default="val")
    stats.add_argument("--n", type=positive_int, default=300)
    stats.add_argument("--seed", type=seed_int, default=0)
    stats.add_argument("--patch", type=positive_int, default=8, help="patch size of the model's grid")
    stats.add_argument("--image-size", type=image_size_int, default=64)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "write":
        config = split_config(args.split, args.image_size)
        fmt = args.format or ("shards" if args.split == "train" else "folder")
        if fmt == "folder":
            try:
                path = write_folder(
                    args.out,
                    args.split,
                    args.n,
                    args.seed,
                    config,
                    progress=not args.quiet,
                    overwrite=args.overwrite,
                )
            except FileExistsError:
                print(
                    f"error: --out {args.out}: exists and is not empty; expected a new or empty folder "
                    "(pass --overwrite to replace it)",
                    file=sys.stderr,
                )
                return 2
            print(f"wrote {args.n} {args.split} samples to {path}")
        else:
            paths = write_shards(
                args.out, args.split, args.n, args.seed, args.shard_size, config, progress=not args.quiet
            )
            print(f"wrote {args.n} {args.split} samples in {len(paths)} shards to {args.out}")
    elif args.command == "sheet":
        print(f"wrote {write_sample_sheet(args.out, seed=args.seed, n=args.n, split=args.split)}")
    elif args.command == "stats":
        config = split_config(args.split, args.image_size)
        samples = [generate_sample(args.seed, args.split, i, config) for i in range(args.n)]
        masks = [s.mask for s in samples]
        print(
            f"toy {args.split}, {args.n} samples, seed {args.seed}, {args.image_size}px, patch {args.patch}"
        )
        print(f"background pixel fraction: {background_fraction(masks):.3f}")
        print(f"objects per image:         {sum(len(s.labels) for s in samples) / args.n:.2f}")
        print(f"all-background mIoU:       {all_background_miou(masks):.3f}")
        print(f"patch-grid ceiling mIoU:   {patch_grid_ceiling(masks, patch=args.patch):.3f}")
    return 0
