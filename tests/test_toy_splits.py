"""The toy world's `dev` (tuning) and `ood` (shifted test) splits: disjoint streams, the card's shifts, and
the default world left bit-identical by the new generator knobs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from synseg.data.benchmarks.eval_sets import eval_set_root
from synseg.data.toy import generate_sample, write_folder
from synseg.data.toy.scene import (
    DEFAULT_CONFIG,
    OOD_CONFIG,
    OOD_TEXTURES,
    TEXTURES,
    ToyWorldConfig,
    compose_scene,
    split_config,
    split_rng,
)
from synseg.evaluation.protocol import build_protocol


def test_default_world_is_unchanged_by_the_shift_knobs() -> None:
    """sha256 of 20 samples of every original split, computed with the generator before `dev`/`ood` existed
    (commit 5a2c87a): the train/val/test/dense splits every reported number rests on are bit-identical."""
    h = hashlib.sha256()
    for split in ("train", "val", "test", "dense"):
        for i in range(20):
            s = generate_sample(0, split, i)
            h.update(s.image.tobytes())
            h.update(s.mask.tobytes())
            h.update(s.caption.encode())
    assert h.hexdigest() == "6ce943cb4d67495ab8a8663679ad2f319d657a04b507a7f51620c68f28113136"


def test_dev_is_a_disjoint_stream_with_the_default_settings() -> None:
    assert split_config("dev") is DEFAULT_CONFIG and split_config("test") is DEFAULT_CONFIG
    test = {generate_sample(0, "test", i).image.tobytes() for i in range(100)}
    dev = [generate_sample(0, "dev", i).image.tobytes() for i in range(100)]
    assert not test & set(dev)


def _object_stats(split: str, config: ToyWorldConfig, n: int = 150) -> tuple[float, set[str], float]:
    """(mean full object area in pixels, textures drawn, objects per scene) over n scenes."""
    areas, textures = [], set()
    for i in range(n):
        scene = compose_scene(split_rng(0, split, i), config)
        areas += scene.areas[scene.areas > 0].tolist()
        textures |= {o.texture for o in scene.objects}
    return float(np.mean(areas)), textures, float(len(areas) / n)


def test_ood_applies_the_card_shifts() -> None:
    assert split_config("ood") is OOD_CONFIG
    assert OOD_CONFIG.radius_range[1] <= DEFAULT_CONFIG.radius_range[0]  # every ood object is smaller
    assert OOD_CONFIG.distractor_count[0] >= DEFAULT_CONFIG.distractor_count[1]
    assert not set(OOD_CONFIG.textures) & set(TEXTURES) and OOD_CONFIG.hue_jitter > DEFAULT_CONFIG.hue_jitter
    test_area, test_textures, _ = _object_stats("test", DEFAULT_CONFIG)
    ood_area, ood_textures, _ = _object_stats("ood", OOD_CONFIG)
    assert ood_area < 0.6 * test_area, (ood_area, test_area)
    assert test_textures <= {"plain", *TEXTURES} and ood_textures == {"plain", *OOD_TEXTURES}
    a, b = generate_sample(0, "ood", 3), generate_sample(0, "ood", 3, OOD_CONFIG)
    assert np.array_equal(a.image, b.image) and a.caption == b.caption


def test_shift_knobs_are_validated() -> None:
    with pytest.raises(ValueError, match="textures"):
        ToyWorldConfig(textures=("zigzag",))
    with pytest.raises(ValueError, match="distractor_count"):
        ToyWorldConfig(distractor_count=(3, 1))
    with pytest.raises(ValueError, match="hue_jitter"):
        ToyWorldConfig(hue_jitter=120.0)


def test_ood_folder_is_written_with_its_settings_and_evaluated_at_toy_threshold(tmp_path) -> None:
    root = write_folder(eval_set_root("toy_ood", "test", None, tmp_path), "ood", 3, 0, progress=False)
    assert root == tmp_path / "ood"
    meta = (root / "meta.json").read_text()
    assert '"checks"' in meta and '"hue_jitter": 50.0' in meta
    cfg = {"thresholds": {"toy": None, "toy_ood": None}}
    protocol = build_protocol("toy_ood", True, cfg, model_image_size=64, checkpoint_threshold=0.35)
    assert (protocol.short_side, protocol.window, protocol.threshold) == (64, 64, 0.35)


def test_a_run_tests_on_toy_ood_at_the_threshold_val_selected_on_toy(tmp_path) -> None:
    from types import SimpleNamespace

    from synseg.data.datamodule import CaptionDataModule
    from synseg.evaluation.callbacks import SegmentationEvalCallback

    toy = {"root": str(tmp_path / "toy"), "n_val": 4, "n_test": 4, "n_ood": 3}
    val = {"datasets": ["toy"], "test_datasets": ["toy", "toy_ood"]}
    dm = CaptionDataModule(source="toy", num_workers=0, toy=toy, tagger={"cache_dir": None}, val=val)
    dm.check_eval_data()  # writes val, test and ood; dev is not used, so not written
    assert [(ds.name, len(ds)) for ds in dm.eval_sets("test")] == [("toy", 4), ("toy_ood", 3)]
    assert not (tmp_path / "toy" / "dev").exists()
    callback = SegmentationEvalCallback(protocol={"thresholds": {"toy": None, "toy_ood": None}})
    ood = SimpleNamespace(name="toy_ood", has_background=True)
    protocol, selects = callback.protocol_for(ood, "test", 64, {"toy": 0.3})
    assert (protocol.threshold, protocol.threshold_source, selects) == (0.3, "val-selected", False)
