"""Exports a run's model as one file: `python -m synseg.export --ckpt logs/train/<run>/checkpoints/best.ckpt
--out model.synseg` (`make export CKPT=... OUT=...`). The file (safetensors weights, its config as JSON
metadata) is what `synseg.models.Segmenter.load` reads, without Lightning or the project's configs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from synseg.errors import UserError, one_line
from synseg.models.segmenter import Segmenter, SegmenterLoadError


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m synseg.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a run's last.ckpt / best.ckpt (or an exported file)")
    p.add_argument("--out", required=True, help="the file to write, e.g. model.synseg")
    p.add_argument("--threshold", type=float, default=None, help="replace the model's background threshold")
    args = p.parse_args(argv)
    try:
        segmenter = Segmenter.load(args.ckpt)
        if args.threshold is not None:
            segmenter.threshold = args.threshold
        path = segmenter.save(args.out)
    except (SegmenterLoadError, UserError, OSError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    config = segmenter.config
    print(f"{path}: {config['kind']} on {config['backbone']['model_name']}, threshold {config['threshold']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
