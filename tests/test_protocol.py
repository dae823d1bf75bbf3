"""The evaluation protocol as data: GroupViT/TCL defaults, per-dataset thresholds, template sets, the toy
resolution from the model, and the configs/protocol options that feed it."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import synseg.eval  # noqa: F401  (registers the run-name resolver used by configs/eval.yaml)
from synseg.evaluation.loading import CONFIG_DIR
from synseg.evaluation.protocol import IMAGENET7_TEMPLATES, PamrSpec, Protocol, build_protocol, template_set


def protocol_cfg(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("eval", overrides=list(overrides))
    return OmegaConf.to_container(cfg.protocol, resolve=True)


def test_groupvit_defaults_per_dataset() -> None:
    cfg = protocol_cfg()
    voc = build_protocol("voc21", True, cfg, model_image_size=64)
    assert (voc.short_side, voc.window, voc.stride) == (448, 448, 224)  # model size ignored off toy/folder
    assert voc.templates == ("a photo of a {}.",) and voc.pamr is None
    assert voc.threshold == 0.95 and voc.background == "clamp" and voc.long_side_max == 2048
    assert build_protocol("context60", True, cfg).threshold == 0.35
    assert build_protocol("coco_object", True, cfg).threshold == 0.95
    assert build_protocol("voc20", False, cfg).threshold is None
    line = voc.describe()
    for part in ("short side 448 (long side <= 2048)", "window 448 stride 224", "templates simple (1)",
                 "below min(0.95 (config), image max)", "PAMR off"):  # fmt: skip
        assert part in line


def test_tcl_option_turns_pamr_on_with_threshold_04() -> None:
    cfg = protocol_cfg("protocol=tcl")
    voc = build_protocol("voc21", True, cfg)
    assert voc.pamr == PamrSpec(10, (1, 2, 4, 8, 12, 24), "output", 4) and voc.threshold == 0.4
    assert voc.background == "threshold" and len(voc.templates) == 9  # TCL: no clamp, its 9 templates
    assert "PAMR 10 it, dilations 1,2,4,8,12,24, at window/4" in voc.describe()
    assert build_protocol("toy", True, cfg, checkpoint_threshold=0.3).threshold == 0.3  # toy still from ckpt


def test_toy_resolution_and_threshold_come_from_the_model() -> None:
    cfg = protocol_cfg()
    toy = build_protocol("toy", True, cfg, model_image_size=64, checkpoint_threshold=0.35)
    assert (toy.short_side, toy.window, toy.stride) == (64, 64, 32)
    assert toy.threshold == 0.35 and toy.threshold_source == "checkpoint val-selected"
    assert build_protocol("toy", True, cfg, model_image_size=64).threshold == 0.5  # none in the checkpoint
    forced = build_protocol(
        "toy", True, protocol_cfg("protocol.resolution=96", "protocol.threshold=0.7"), 64, 0.35
    )
    assert (forced.short_side, forced.window, forced.stride, forced.threshold) == (96, 96, 48, 0.7)
    folder = build_protocol("folder", True, cfg, model_image_size=224, checkpoint_threshold=0.35)
    assert folder.window == 224 and folder.threshold == 0.5  # folder's threshold is a table value


def test_template_sets() -> None:
    assert len(IMAGENET7_TEMPLATES) == 7 and all("{}" in t for t in IMAGENET7_TEMPLATES)
    assert "itap of a {}." in IMAGENET7_TEMPLATES
    p = build_protocol("voc20", False, protocol_cfg("protocol.templates=imagenet7"))
    assert p.templates == IMAGENET7_TEMPLATES and "imagenet7 (7)" in p.describe()
    assert template_set("custom", ["a {} here."]) == ("a {} here.",)
    with pytest.raises(ValueError, match="custom_templates"):
        template_set("custom", [])
    with pytest.raises(ValueError, match="simple, imagenet7, tcl9, openai80, custom"):
        template_set("fancy")


def test_invalid_protocols_fail_clearly() -> None:
    with pytest.raises(ValueError, match="stride"):
        Protocol("voc21", window=448, stride=500, threshold=0.9)
    with pytest.raises(ValueError, match="'\\{\\}'"):
        Protocol("voc21", templates=("no slot",), threshold=0.9)
    with pytest.raises(ValueError, match="needs a threshold"):
        Protocol("voc21", has_background=True, threshold=None)


def test_protocol_is_json_ready_with_its_line() -> None:
    p = build_protocol("voc21", True, protocol_cfg("protocol=tcl"))
    d = p.to_dict()
    assert d["threshold"] == 0.4 and d["pamr"]["iterations"] == 10 and d["line"] == p.describe()
    assert len(p.describe(multiline=True).splitlines()) == 5
