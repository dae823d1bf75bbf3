"""`python -m synseg.segment`: an overlay with a legend for any image size and any words, from maskclip or a
checkpoint, and one clear error line for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from synseg.segment import main, parse_classes
from tests.conftest import ROOT
from tests.tiny_checkpoint import save_tiny_checkpoint

MASKCLIP = ["--model", "maskclip", "--pretrained", "none"]  # random weights: no stand-in CLIP needed


@pytest.fixture(scope="module")
def odd_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 37 x 100 JPEG (not square, not a multiple of the patch size)."""
    path = tmp_path_factory.mktemp("img") / "odd.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (37, 100, 3), dtype=np.uint8)).save(path)
    return path


def test_maskclip_overlay_for_any_size_and_words(tmp_path: Path, odd_image: Path, capsys) -> None:
    out, mask = tmp_path / "o" / "overlay.png", tmp_path / "mask.png"
    argv = ["--image", str(odd_image), "--classes", "red sofa, a cat, Straße", "--out", str(out)]
    code = main([*MASKCLIP, *argv, "--threshold", "0.4", "--mask-out", str(mask)])
    assert code == 0
    overlay = Image.open(out)
    assert overlay.size[0] > overlay.size[1] > 50  # image + prediction side by side, legend on the right
    labels = np.asarray(Image.open(mask))
    assert labels.shape == (37, 100) and labels.max() <= 3
    printed = capsys.readouterr().out
    assert "red sofa" in printed and "Straße" in printed and "bg threshold 0.4" in printed
    shares = [
        float(part.rsplit(" ", 1)[1].rstrip("%"))
        for part in printed.splitlines()[0].split(": ", 1)[1].split(", ")
    ]
    assert abs(sum(shares) - 100) < 0.5  # background + 3 classes cover the image


def test_without_threshold_every_pixel_gets_a_class(tmp_path: Path, odd_image: Path) -> None:
    mask = tmp_path / "mask.png"
    argv = ["--image", str(odd_image), "--classes", "sky, tree", "--out", str(tmp_path / "o.png")]
    assert main([*MASKCLIP, *argv, "--mask-out", str(mask), "--short-side", "48"]) == 0
    labels = np.asarray(Image.open(mask))
    assert labels.min() >= 1 and labels.max() <= 2


def test_checkpoint_uses_its_training_size(tmp_path: Path, odd_image: Path, capsys) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", image_size=32)
    argv = [
        "--ckpt",
        str(ckpt),
        "--image",
        str(odd_image),
        "--classes",
        "circle, star",
        "--out",
        str(tmp_path / "o.png"),
    ]
    torch.manual_seed(0)  # the tiny checkpoint's backbone is random (pretrained=None): the same one twice
    assert main([*argv, "--mask-out", str(tmp_path / "m.png")]) == 0
    printed = capsys.readouterr().out
    assert "short side 32 | window 32 stride 16" in printed
    # the threshold travels with the model: used by default, and said so
    assert "bg threshold 0.35 (the model's (selected on val))" in printed
    labels = np.asarray(Image.open(tmp_path / "m.png"))
    torch.manual_seed(0)
    assert main([*argv, "--no-background", "--mask-out", str(tmp_path / "n.png")]) == 0
    every = np.asarray(Image.open(tmp_path / "n.png"))
    assert every.min() >= 1 and "bg threshold none" in capsys.readouterr().out
    assert (labels == 0).any() and np.array_equal(labels[labels > 0], every[labels > 0])


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (" , ", "no class names"),
        ("cat,, dog", "empty name"),
        ("cat, dog, Cat", "'Cat' given twice"),
        ("background, cat", "not a class here"),
    ],
)
def test_bad_class_lists(classes: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_classes(classes)


def test_bad_input_gives_one_error_line_and_exit_2(tmp_path: Path, odd_image: Path, capsys) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    out = str(tmp_path / "o.png")
    assert main([*MASKCLIP, "--image", str(broken), "--classes", "cat", "--out", out]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: --image {broken}: cannot read it as an image (UnidentifiedImageError)"
    )
    assert main([*MASKCLIP, "--image", str(tmp_path / "nope.png"), "--classes", "cat", "--out", out]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main([*MASKCLIP, "--image", str(odd_image), "--classes", "cat, cat", "--out", out]) == 2
    assert "given twice" in capsys.readouterr().err
    assert (
        main(
            ["--ckpt", str(tmp_path / "x.ckpt"), "--image", str(odd_image), "--classes", "cat", "--out", out]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    assert not Path(out).exists()


def test_module_entry_point_exit_code(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "synseg.segment",
        "--model",
        "maskclip",
        "--image",
        str(tmp_path / "none.png"),
        "--classes",
        "cat",
        "--out",
        str(tmp_path / "o.png"),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().endswith("no such file")
