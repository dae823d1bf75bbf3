"""The protocol presets against their peers' own code: the resize cap, TCL's templates and PAMR at the model's
output resolution, GroupViT's min() clamp, NACLIP's whole-image inference, background words and PAMR at full
size; each rule checked against a small hand or numpy re-implementation of the peer's code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synseg.evaluation import runner
from synseg.evaluation.evaluator import SegmentationEvaluator
from synseg.evaluation.inference import resize_short_side
from synseg.evaluation.protocol import IMAGENET7_TEMPLATES, Protocol, build_protocol, template_set
from synseg.evaluation.runner import dense_scores, words_to_foreground
from tests.test_protocol import protocol_cfg


def test_resize_caps_the_long_side_like_mmcv_keep_ratio() -> None:
    x = torch.zeros(1, 3, 100, 1000)
    assert resize_short_side(x, 448).shape[-2:] == (448, 4480)  # uncapped
    assert resize_short_side(x, 448, 2048).shape[-2:] == (205, 2048)  # scale min(4.48, 2.048)
    assert resize_short_side(torch.zeros(1, 3, 375, 500), 448, 2048).shape[-2:] == (448, 597)


def test_template_sets_match_the_peers() -> None:
    assert (
        "a bad photo of a {}." in IMAGENET7_TEMPLATES and "a bad photo of the {}." not in IMAGENET7_TEMPLATES
    )
    tcl9 = template_set("tcl9")
    assert tcl9[:7] == IMAGENET7_TEMPLATES and tcl9[7:] == ("a photo of many {}.", "a photo of {}s.")
    openai80 = template_set("openai80")
    assert len(openai80) == len(set(openai80)) == 80 and openai80[:2] == (
        "a bad photo of a {}.",
        "a photo of many {}.",
    )


def test_naclip_preset_per_dataset() -> None:
    cfg = protocol_cfg("protocol=naclip")
    voc = build_protocol("voc21", True, cfg)
    assert (voc.short_side, voc.long_side_max, voc.slide, voc.threshold) == (336, 2048, False, 0.1)
    assert voc.background == "words" and len(voc.background_words) == 26 and voc.logit_scale == 40
    assert voc.pamr is not None and (voc.pamr.dilations, voc.pamr.at) == ((8, 16), "image")
    assert len(voc.templates) == 80 and "whole image" in voc.describe()
    city = build_protocol("cityscapes", False, cfg)
    assert (city.short_side, city.window, city.stride, city.slide, city.threshold) == (
        560,
        224,
        112,
        True,
        None,
    )
    ctx = build_protocol("context60", True, cfg)
    assert ctx.background_words == ("background",) and ctx.slide
    assert not build_protocol("voc20", False, cfg).slide
    toy = build_protocol("toy", True, cfg, model_image_size=64, checkpoint_threshold=0.3)
    assert toy.background == "threshold" and toy.threshold == 0.3 and toy.window == 64


def _naclip_reference(logits: np.ndarray, n_words: int, scale: float, thd: float) -> np.ndarray:
    """NACLIP's postprocess_result in numpy: softmax over queries, per-class max over its queries (class 0 =
    the background words), argmax, and background where the top probability is below the threshold."""
    e = np.exp(scale * logits - (scale * logits).max(0, keepdims=True))
    probs = e / e.sum(0, keepdims=True)  # (Q, H, W)
    per_class = np.concatenate([probs[:n_words].max(0, keepdims=True), probs[n_words:]])  # (1 + C, H, W)
    pred = per_class.argmax(0)
    pred[per_class.max(0) < thd] = 0
    return pred


def test_background_words_reproduce_naclip_postprocess() -> None:
    rng = np.random.default_rng(0)
    n_words, n_classes = 3, 4
    logits = rng.normal(0.2, 0.05, size=(n_words + n_classes, 9, 11)).astype(np.float32)  # cosines
    for thd in (0.1, 0.3):
        probs = torch.from_numpy(logits)[None].mul(40).softmax(1)  # what a training-free Segmenter returns
        fg = words_to_foreground(probs, n_words)
        evaluator = SegmentationEvaluator(["background", *map(str, range(n_classes))], True, thd)
        ours = evaluator.predict(fg)[0].numpy()
        ref = _naclip_reference(logits, n_words, 40.0, thd)
        assert (ref > 0).any() and (ref == 0).any()  # both outcomes occur in this example
        np.testing.assert_array_equal(ours, ref)


def test_groupvit_clamp_keeps_the_images_best_pixel() -> None:
    scores = torch.tensor([[[[0.2, 0.6], [0.5, 0.1]]], [[[0.97, 0.3], [0.96, 0.99]]]])  # (2, 1, 2, 2)
    plain = SegmentationEvaluator(["background", "a"], True, 0.95)
    clamp = SegmentationEvaluator(["background", "a"], True, 0.95, clamp=True)
    # image 0: best 0.6 < 0.95: threshold min(0.95, 0.6) keeps its top pixel; image 1: the plain rule
    assert plain.predict(scores).tolist() == [[[0, 0], [0, 0]], [[1, 0], [1, 1]]]
    assert clamp.predict(scores).tolist() == [[[0, 1], [0, 0]], [[1, 0], [1, 1]]]


def _record_pamr(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    sizes: list[tuple[int, ...]] = []

    def fake(image, masks, iterations, dilations):  # records where PAMR runs, returns the masks
        sizes.append((*image.shape[-2:], *masks.shape[-2:]))
        return masks

    monkeypatch.setattr(runner, "pamr", fake)
    return sizes


@pytest.mark.parametrize(("at", "expected"), [("window", (32, 32, 32, 32)), ("output", (8, 8, 8, 8)),
                                              ("image", (40, 60, 40, 60))])  # fmt: skip
def test_pamr_runs_where_the_preset_says(monkeypatch: pytest.MonkeyPatch, at: str, expected: tuple) -> None:
    sizes = _record_pamr(monkeypatch)
    cfg = {"short_side": 32, "window": 32, "stride": 16, "pamr": True, "pamr_at": at, "pamr_output_stride": 4}
    protocol = build_protocol("voc20", False, cfg)
    segment = lambda x: torch.rand(x.shape[0], 2, x.shape[-2] // 8, x.shape[-1] // 8)  # a stride-8 model
    out = dense_scores(segment, torch.rand(1, 3, 40, 60), protocol)
    assert out.shape == (1, 2, 40, 60) and sizes and set(sizes) == {expected}


def test_whole_image_inference_is_one_padded_forward() -> None:
    seen: list[tuple[int, ...]] = []

    def segment(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return x[:, :2]

    protocol = Protocol("voc20", short_side=40, window=32, stride=16, has_background=False, slide=False)
    out = dense_scores(segment, torch.rand(2, 3, 50, 70), protocol)
    assert seen == [(2, 3, 48, 64)] and out.shape == (2, 2, 50, 70)  # 40 x 56 padded to multiples of 16


def test_protocol_logit_scale_reaches_training_free_models_but_not_their_saved_config() -> None:
    from types import SimpleNamespace

    from synseg.evaluation.runner import set_protocol_classes

    calls = []
    seg = SimpleNamespace(kind="naclip", config={"temperature": None}, protocol_temperature=None,
                          set_classes=lambda names, templates: calls.append(names))  # fmt: skip
    naclip = build_protocol("voc21", True, protocol_cfg("protocol=naclip"))
    set_protocol_classes(seg, ["cat"], naclip)
    assert seg.protocol_temperature == 40 and seg.config["temperature"] is None
    assert calls[-1] == [*naclip.background_words, "cat"]
    set_protocol_classes(seg, ["cat"], build_protocol("voc21", True, protocol_cfg()))  # back to CLIP's own
    assert seg.protocol_temperature is None and calls[-1] == ["cat"]
