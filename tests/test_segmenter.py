"""`synseg.models.Segmenter`, the one inference model: its labels and scores, the exported file and the
training checkpoint giving the same model, the threshold travelling with it, `make export`, and an inference
path that imports neither Lightning nor Hydra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from synseg.models import Segmenter, SegmenterLoadError
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in CLIP weight file (random, but a file: every load gives the same backbone)."""
    from synseg.models.toyclip import build_open_clip

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "toyclip-vit-p8c.pt"
    torch.save(build_open_clip("toyclip-vit-p8c").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, clip_file: Path) -> Path:
    """A SynSeg training checkpoint (via a Lightning Trainer) with a val-selected threshold of 0.3."""
    import lightning as L

    from tests.modules import build_module

    module = build_module("synseg", f"clip.pretrained={clip_file}")
    module.val_thresholds = {"toy": 0.3}
    trainer = L.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu"
    )
    trainer.strategy.connect(module)
    path = tmp_path_factory.mktemp("run") / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    trainer.save_checkpoint(path)
    return path


def images(h: int = 64, w: int = 64, n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(1))


def test_exported_file_and_checkpoint_are_the_same_model(trained: Path, tmp_path: Path) -> None:
    from_ckpt = Segmenter.load(trained)
    exported = Segmenter.load(from_ckpt.save(tmp_path / "model.synseg"))
    assert exported.config == from_ckpt.config and exported.threshold == pytest.approx(0.3)
    for seg in (from_ckpt, exported):
        seg.set_classes(["circle", "square", "star"])
    torch.testing.assert_close(exported.scores(images()), from_ckpt.scores(images()), rtol=0, atol=0)
    assert (tmp_path / "model.synseg").read_bytes()[8:9] == b"{"  # safetensors: a JSON header first


def test_labels_follow_the_threshold_and_the_class_order(trained: Path) -> None:
    seg = Segmenter.load(trained)
    seg.set_classes(["circle", "square", "star"])
    x = images(37, 50)  # any size, not a multiple of the patch
    scores = seg.scores(x)
    assert scores.shape == (2, 3, 37, 50) and scores.dtype == torch.float32
    best, idx = scores.max(1)
    labels = seg.segment(x)  # the model's own threshold (0.3)
    assert labels.dtype == torch.int64 and labels.shape == (2, 37, 50)
    assert torch.equal(labels, torch.where(best > 0.3, idx + 1, 0))
    assert torch.equal(seg.segment(x, threshold=0.0), idx + 1)  # every score > 0: no background
    assert torch.equal(seg.segment(x, background=False), idx + 1)
    assert (seg.segment(x, threshold=float(best.max())) == 0).all()
    seg.set_classes(["star", "circle", "square"])  # the k-th name is label k
    perm = seg.segment(x, threshold=0.0)
    assert torch.equal(perm, torch.tensor([0, 2, 3, 1])[idx + 1])


def test_synseg_scores_do_not_depend_on_the_evaluation_chunk(trained: Path) -> None:
    seg = Segmenter.load(trained)
    seg.set_classes(["circle", "square", "star", "heart"])
    whole = seg.scores(images(n=3))  # 12 (image, class) pairs in one decoder call
    seg.config["eval_chunk"] = 5  # in chunks of 5, 5, 2
    torch.testing.assert_close(seg.scores(images(n=3)), whole, rtol=1e-5, atol=1e-6)
    logits, _ = seg.pair_maps(
        seg.backbone.encode_images(seg.normalize(images(n=3))),
        torch.tensor([2]),
        seg.class_cond[1:2],
        seg.class_text[1:2],
    )  # image 2, class "square", alone
    torch.testing.assert_close(whole[2, 1], torch.sigmoid(logits)[0, 0], rtol=1e-5, atol=1e-6)


def test_training_free_segmenter_and_load_errors(tmp_path: Path, clip_file: Path) -> None:
    seg = Segmenter.training_free("maskclip", {"model_name": "toyclip-vit-p8c", "pretrained": str(clip_file)})
    seg.set_classes(["circle", "star"])
    scores = seg.scores(images())
    # MaskCLIP by hand: the last block's value path of the frozen CLIP, cosine with the class prompts at
    # CLIP's logit scale, a softmax over the classes on the 8x8 patch grid, bilinear upsampling to the image
    feats = seg.backbone.encode_images(seg.normalize(images()))
    cos = torch.nn.functional.normalize(feats["dense"], dim=-1) @ seg.class_text.T  # (B, 64, 2)
    probs = (seg.backbone.clip.logit_scale.exp() * cos).softmax(-1).transpose(1, 2).reshape(2, 2, 8, 8)
    expected = torch.nn.functional.interpolate(probs, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(scores, expected)
    assert seg.threshold is None and (seg.segment(images()) >= 1).all()  # no threshold: no background
    with pytest.raises(RuntimeError, match="set_classes"):
        Segmenter.training_free("maskclip", {"model_name": "toyclip-vit-p8c", "pretrained": None}).scores(
            images()
        )
    (tmp_path / "garbage.synseg").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all")
    for bad, text in ((tmp_path / "garbage.synseg", "not a readable exported model"),
                      (tmp_path / "none.ckpt", "no such file")):  # fmt: skip
        with pytest.raises(SegmenterLoadError, match=text):
            Segmenter.load(bad)
    torch.save({"state_dict": {}}, tmp_path / "toyclip.ckpt")  # a checkpoint that is no Segmenter
    with pytest.raises(SegmenterLoadError, match="not a checkpoint of a segmentation model"):
        Segmenter.load(tmp_path / "toyclip.ckpt")


def test_inference_imports_neither_lightning_nor_hydra(trained: Path) -> None:
    code = (
        "import sys, torch; from synseg.models import Segmenter; "
        f"s = Segmenter.load({str(trained)!r}); s.set_classes(['cat', 'dog']); "
        "s.segment(torch.rand(1, 3, 40, 40)); "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'hydra')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_make_export_writes_the_file(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.synseg"
    done = subprocess.run(["make", "--no-print-directory", "export", f"CKPT={trained}", f"OUT={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "synseg on toyclip-vit-p8c, threshold 0.3" in done.stdout
    assert Segmenter.load(out).config == Segmenter.load(trained).config
    bad = subprocess.run(["make", "--no-print-directory", "export",
                          f"CKPT={tmp_path / 'no.ckpt'}", f"OUT={out}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode != 0 and "no such file" in bad.stderr and "Traceback" not in bad.stderr
