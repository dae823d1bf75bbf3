"""The path a user runs with real weights: `naclip` and `maskclip` built on the real ViT-B-16 architecture
(random weights: no download) and evaluated with the full `protocol=naclip` (short side 336, whole image on
VOC, 224/112 windows on Context, background words, softmax(40 x cosine), PAMR at full size) on a fake VOC and
Context tree. The fast test uses one template per class; the slow one CLIP's 80 templates, as NACLIP does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synseg.eval import evaluate
from tests.test_eval_cli import eval_cfg

VOC = ("VOCdevkit/VOC2012", "JPEGImages", "SegmentationClass", "ImageSets/Segmentation/val.txt", 21)
CONTEXT = (
    "VOCdevkit/VOC2010",
    "JPEGImages",
    "SegmentationClassContext",
    "ImageSets/SegmentationContext/val.txt",
    60,
)


def _write_tree(root: Path, layout: tuple, items: list[tuple[str, int, int]], seed: int) -> None:
    base, images, masks, split, n_classes = layout
    rng = np.random.default_rng(seed)
    for key, w, h in items:
        for folder in (images, masks):
            (root / base / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / base / images / f"{key}.jpg"
        )
        mask = rng.integers(0, n_classes, (h, w)).astype(np.uint8)
        mask[:2] = 255  # a boundary band, as VOC's
        Image.fromarray(mask).save(root / base / masks / f"{key}.png")
    (root / base / split).parent.mkdir(parents=True, exist_ok=True)
    (root / base / split).write_text("".join(f"{k}\n" for k, _, _ in items))


@pytest.fixture(scope="module")
def fake_benchmarks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("benchmarks")
    _write_tree(root, VOC, [("2007_000001", 120, 90), ("2007_000002", 64, 96)], seed=0)
    _write_tree(root, CONTEXT, [("2008_000001", 120, 90)], seed=1)
    return root


def _run(
    tmp_path: Path, root: Path, method: str, *extra: str, sets: str = "voc21,context60"
) -> tuple[dict, dict]:
    cfg = eval_cfg(
        tmp_path, f"method={method}", "clip=vit_b16", "clip.pretrained=null", "protocol=naclip",
        f"datasets=[{sets}]", f"data_root={root}", "wandb=false", f"run_name={method}-fake", *extra,
    )  # fmt: skip
    metrics = evaluate(cfg)
    protocol = json.loads((Path(cfg.paths.output_dir) / "protocol.json").read_text())
    return metrics, protocol


@pytest.mark.parametrize(
    "method", ["naclip", pytest.param("maskclip", marks=pytest.mark.slow)]
)  # suite budget
def test_real_vit_b16_runs_the_naclip_protocol_on_a_fake_voc_tree(
    tmp_path: Path, fake_benchmarks: Path, method: str
) -> None:
    # maskclip on voc21 only: the sliding-window path is the same code, and each prompt costs ~0.1 s on CPU
    sets = "voc21,context60" if method == "naclip" else "voc21"
    metrics, protocol = _run(tmp_path, fake_benchmarks, method, "protocol.templates=simple", sets=sets)
    seg = protocol["source"]["segmenter"]
    assert seg["kind"] == method and seg["backbone"]["model_name"] == "ViT-B-16"
    assert seg["backbone"].get("dense_mode", method) == method
    voc = protocol["datasets"]["voc21"]
    got = (voc["short_side"], voc["slide"], voc["background"], voc["threshold"], voc["logit_scale"])
    assert got == (336, False, "words", 0.1, 40) and len(voc["background_words"]) == 26
    assert voc["pamr"] == {"iterations": 10, "dilations": [8, 16], "at": "image", "output_stride": 4}
    assert metrics["voc21/n_images"] == 2
    if method == "naclip":
        ctx = protocol["datasets"]["context60"]
        got = (ctx["window"], ctx["stride"], ctx["slide"], ctx["background_words"])
        assert got == (224, 112, True, ["background"]) and metrics["context60/n_images"] == 1
    for name in sets.split(","):
        assert 0.0 <= metrics[f"{name}/mIoU"] <= 1.0 and metrics[f"{name}/threshold"] == 0.1
        per_class = [k for k in metrics if k.startswith(f"{name}/per_class/")]
        assert len(per_class) == (21 if name == "voc21" else 60)  # background words never become classes


@pytest.mark.slow
def test_real_vit_b16_naclip_with_the_80_templates(tmp_path: Path, fake_benchmarks: Path) -> None:
    metrics, protocol = _run(tmp_path, fake_benchmarks, "naclip")
    assert protocol["datasets"]["voc21"]["template_set"] == "openai80"
    assert len(protocol["datasets"]["voc21"]["templates"]) == 80 and metrics["voc21/n_images"] == 2
