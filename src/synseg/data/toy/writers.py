"""Toy-world writers: the `folder` benchmark layout, CC3M-style webdataset tar shards, a sample sheet."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tarfile
import textwrap
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from synseg.data.toy.scene import SPLITS, ToyWorldConfig, generate_sample, split_config
from synseg.data.toy.shapes import CATEGORIES


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")


def _report(progress: bool, what: str, done: int, total: int) -> None:
    """Progress on stderr at every tenth of the work (one line each, friendly to logs)."""
    if progress and (done == total or done % max(total // 10, 1) == 0):
        print(f"{what}: {done}/{total}", file=sys.stderr, flush=True)


def write_folder(
    out: str | Path,
    split: str,
    n: int,
    seed: int,
    config: ToyWorldConfig | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write `n` samples of `split` in the `folder` benchmark layout (images/, masks/, classes.txt,
    captions.jsonl, meta.json); built in a temporary folder, then renamed, so it is never half written."""
    _check_split(split)
    _check_n(n)
    config = split_config(split) if config is None else config  # the split's own settings (ood: shifted)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True, or --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir()  # unlike mkdtemp, honours the umask
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        width = max(6, len(str(n - 1)))
        with open(tmp / "captions.jsonl", "w", encoding="utf-8") as captions:
            for i in range(n):
                sample = generate_sample(seed, split, i, config)
                key = f"{i:0{width}d}"
                Image.fromarray(sample.image).save(tmp / "images" / f"{key}.png")
                Image.fromarray(sample.mask).save(tmp / "masks" / f"{key}.png")
                record = {
                    "key": key,
                    "caption": sample.caption,
                    "labels": list(sample.labels),
                    "mentioned": list(sample.mentioned),
                }
                captions.write(json.dumps(record) + "\n")
                _report(progress, f"toyworld {split} -> {out}", i + 1, n)
        (tmp / "classes.txt").write_text("\n".join(("background", *CATEGORIES)) + "\n", encoding="utf-8")
        meta = {
            "generator": "synseg.data.toy",
            "format": "folder",
            "seed": seed,
            "split": split,
            "n": n,
            "config": asdict(config),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        trash = None
        if out.exists() or out.is_symlink():
            trash = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, trash)
        os.replace(tmp, out)
        if trash is not None and trash.is_dir() and not trash.is_symlink():
            shutil.rmtree(trash)
        elif trash is not None:
            trash.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def write_shards(
    out: str | Path,
    split: str,
    n: int,
    seed: int,
    shard_size: int = 1000,
    config: ToyWorldConfig | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write `n` samples as CC3M/CC12M-style webdataset shards `{split}-NNNNNN.tar` (members KEY.jpg, KEY.txt,
    KEY.json; KEY = global index, 9 digits) plus `{split}-stats.json`; returns the shard paths."""
    _check_split(split)
    _check_n(n)
    config = split_config(split) if config is None else config  # the split's own settings (ood: shifted)
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    num_shards = -(-n // shard_size)
    paths = []
    for k in range(num_shards):
        path = out / f"{split}-{k:06d}.tar"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with tarfile.open(tmp, "w") as tar:
                for i in range(k * shard_size, min((k + 1) * shard_size, n)):
                    sample = generate_sample(seed, split, i, config)
                    buf = io.BytesIO()
                    Image.fromarray(sample.image).save(buf, format="JPEG", quality=95)
                    meta = {"labels": list(sample.labels), "mentioned": list(sample.mentioned), "index": i}
                    key = f"{i:09d}"
                    _add_member(tar, f"{key}.jpg", buf.getvalue())
                    _add_member(tar, f"{key}.txt", sample.caption.encode("utf-8"))
                    _add_member(tar, f"{key}.json", json.dumps(meta).encode("utf-8"))
                    _report(progress, f"toyworld {split} -> {out}", i + 1, n)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        paths.append(path)
    pattern = re.compile(rf"{re.escape(split)}-(\d{{6}})\.tar")
    for stale in out.iterdir():  # shards of an earlier, larger run would be picked up by a glob
        match = pattern.fullmatch(stale.name)
        if match and int(match.group(1)) >= num_shards:
            stale.unlink()
    stats = {
        "num_samples": n,
        "num_shards": num_shards,
        "seed": seed,
        "split": split,
        "config": asdict(config),
    }
    (out / f"{split}-stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return paths


def colour_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) uint8 for display: background black, ignore white, one colour per class."""
    palette = np.zeros((256, 3), np.uint8)
    palette[1 : len(CATEGORIES) + 1] = [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
        (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    ]  # fmt: skip
    palette[255] = (255, 255, 255)
    return palette[mask]


def write_sample_sheet(out_png: str | Path, seed: int = 0, n: int = 8, split: str = "val") -> Path:
    """Save a figure of `n` samples: image, coloured mask (with its labels) and wrapped caption per column."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check_split(split)
    _check_n(n)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(1.7 * n, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, n, squeeze=False, gridspec_kw={"height_ratios": [1.0, 1.0, 0.6]})
    for i in range(n):
        sample = generate_sample(seed, split, i)
        axes[0, i].imshow(sample.image, interpolation="nearest")
        axes[1, i].imshow(colour_mask(sample.mask), interpolation="nearest")
        axes[1, i].set_title(", ".join(CATEGORIES[c] for c in sample.labels), fontsize=6)
        wrapped = textwrap.fill(sample.caption, width=24)
        axes[2, i].text(
            0.5, 1.0, wrapped, ha="center", va="top", fontsize=6.5, transform=axes[2, i].transAxes
        )
        for ax in axes[:, i]:
            ax.set_axis_off()
    fig.suptitle(f"toy world, split {split}, seed {seed}: image, mask (white = ignore), caption", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    return out_png
