"""SegmentationEvaluator, slide_inference and SegmentationEvalCallback on tiny hand-made inputs (CPU, no
wandb run)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassJaccardIndex

from synseg.evaluation import callbacks as cb_mod
from synseg.evaluation.callbacks import SegmentationEvalCallback, iou_table_rows, mask_overlays
from synseg.evaluation.evaluator import SegmentationEvaluator
from synseg.evaluation.inference import resize_short_side, slide_inference


def one_hot_scores(labels: torch.Tensor, c: int) -> torch.Tensor:
    """(B, H, W) label ids -> (B, C, H, W) scores whose argmax is the label."""
    return F.one_hot(labels, c).permute(0, 3, 1, 2).float()


def numpy_miou(pred: np.ndarray, target: np.ndarray, c: int) -> tuple[np.ndarray, float]:
    keep = target != 255
    cm = np.bincount(target[keep] * c + pred[keep], minlength=c * c).reshape(c, c).astype(float)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return iou, float(np.nanmean(iou))


# ---- mIoU ---------------------------------------------------------------------------------------------
def test_miou_matches_numpy_confusion_matrix() -> None:
    g = torch.Generator().manual_seed(0)
    c = 6
    target = torch.randint(0, 4, (3, 20, 24), generator=g)  # classes 4, 5 never in the truth
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    pred = torch.randint(0, 4, target.shape, generator=g)
    pred[torch.rand(target.shape, generator=g) < 0.05] = 5  # class 5 only in the prediction; class 4 nowhere
    ev = SegmentationEvaluator([f"c{i}" for i in range(c)], has_background=False)
    ev.update(one_hot_scores(pred, c), target)
    res = ev.compute()
    iou, miou = numpy_miou(pred.numpy(), target.numpy(), c)
    assert res["mIoU"] == pytest.approx(miou, abs=1e-9)
    assert math.isnan(res["per_class_iou"]["c4"]) and res["per_class_iou"]["c5"] == 0.0
    assert [res["per_class_iou"][f"c{i}"] for i in range(4)] == pytest.approx(iou[:4].tolist())
    assert res["n_images"] == 3
    # torchmetrics 1.9's own macro also drops classes with union 0 (documented in metrics.py)
    tm = MulticlassJaccardIndex(c, average="macro", ignore_index=255)
    assert float(tm(pred, target)) == pytest.approx(miou, abs=1e-6)


def test_accumulation_equals_one_update() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(6, 3, 10, 12, generator=g)
    target = torch.randint(0, 4, (6, 10, 12), generator=g)
    target[:2][target[:2] == 3] = 1  # batches with different class mixes: per-batch averaging would differ
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    names = ["background", "a", "b", "c"]
    one, many = (SegmentationEvaluator(names, True, 0.6, thresholds=[0.4, 0.6]) for _ in range(2))
    one.update(scores, target)
    for s in (slice(0, 2), slice(2, 3), slice(3, 6)):
        many.update(scores[s], target[s])
    a, b = one.compute(), many.compute()
    for key in ("mIoU", "fg_pixel_acc", "image_top1", "act_in", "act_bg", "act_absent", "n_images"):
        assert a[key] == pytest.approx(b[key], abs=1e-12), key
    assert a["mIoU_at"] == pytest.approx(b["mIoU_at"])
    many.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics' warning, harmless here
        assert many.compute()["n_images"] == 0


# ---- background threshold -----------------------------------------------------------------------------
def test_threshold_channel_and_grid() -> None:
    names = ["background", "a", "b"]
    ev = SegmentationEvaluator(names, True, threshold=0.5)
    scores = torch.tensor([[0.3, 0.6, 0.5, 0.9], [0.2, 0.9, 0.1, 0.7]]).reshape(1, 2, 1, 4)
    # below -> background; above -> argmax class; equal to the threshold -> background (label 0 wins ties)
    assert ev.predict(scores).tolist() == [[[0, 2, 0, 1]]]

    g = torch.Generator().manual_seed(2)
    scores = torch.rand(4, 2, 8, 8, generator=g)
    target = torch.randint(0, 3, (4, 8, 8), generator=g)
    grid = SegmentationEvaluator(names, True, threshold=0.5, thresholds=[0.3, 0.5, 0.7])
    single = SegmentationEvaluator(names, True, threshold=0.7)
    grid.update(scores, target)
    single.update(scores, target)
    res = grid.compute()
    assert set(res["mIoU_at"]) == {0.3, 0.5, 0.7}
    assert res["mIoU_at"][0.5] == pytest.approx(res["mIoU"])
    assert res["mIoU_at"][0.7] == pytest.approx(single.compute()["mIoU"])


def test_best_threshold_on_constructed_example() -> None:
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[:, :2] = 1  # top half class "a", bottom half background
    scores = torch.full((2, 1, 4, 4), 0.4)
    scores[:, :, :2] = 0.7  # perfect for any threshold in [0.4, 0.7)
    ev = SegmentationEvaluator(["background", "a"], True, threshold=0.2, thresholds=[0.2, 0.5, 0.8])
    ev.update(scores, target)
    res = ev.compute()
    assert res["mIoU_at"][0.5] == 1.0 and res["mIoU_at"][0.2] < 1.0 and res["mIoU_at"][0.8] < 1.0
    assert ev.best_threshold() == 0.5
    assert SegmentationEvaluator(["a", "b"], False, thresholds=[0.1, 0.2]).best_threshold() == 0.5


# ---- threshold-free and collapse diagnostics ------------------------------------------------------------
def diag_example() -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.tensor([[[0, 1], [2, 255]], [[3, 3], [0, 0]]])
    scores = torch.tensor(
        [
            [
                [[0.2, 0.9], [0.1, 0.5]],
                [[0.4, 0.3], [0.6, 0.7]],
                [[0.1, 0.2], [0.8, 0.85]],
            ],  # image 1: a, b, c
            [[[0.95, 0.0], [0.0, 0.0]], [[0.1, 0.1], [0.1, 0.1]], [[0.9, 0.8], [0.3, 0.1]]],  # image 2
        ]
    )
    return scores, target


def test_diagnostics_hand_made() -> None:
    scores, target = diag_example()
    ev = SegmentationEvaluator(["background", "a", "b", "c"], True)
    ev.update(scores, target)
    res = ev.compute()
    # a@(0,1) right, b@(1,0) -> c, c@(0,0) -> a, c@(0,1) right
    assert res["fg_pixel_acc"] == pytest.approx(2 / 4)
    assert res["image_top1"] == pytest.approx(1 / 2)  # image 1: a (present); image 2: a (absent)
    assert res["act_in"] == pytest.approx((0.9 + 0.6 + 0.9 + 0.8) / 4)
    assert res["act_bg"] == pytest.approx((0.2 + 0.4 + 0.3 + 0.1) / 4)  # {a, b} on 1 bg px; {c} on 2 bg px
    assert res["act_absent"] == pytest.approx((0.1 + 0.2 + 0.8 + 0.95 + 0.4) / 11)  # c on 3 px; a, b on 4 px
    assert res["inverted"] is False and res["n_images"] == 2 and res["threshold"] == 0.5

    ev.reset()
    present = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.1, 0.9]])  # image-level scores override max-over-pixels
    ev.update(scores, target, present_scores=present)
    assert ev.compute()["image_top1"] == 1.0

    inverted = SegmentationEvaluator(["background", "a", "b", "c"], True)
    inverted.update(1 - scores, target)
    assert inverted.compute()["inverted"] is True

    no_bg = SegmentationEvaluator(["a", "b", "c"], False)
    no_bg.update(scores, torch.where((target == 0) | (target == 255), 255, target - 1))
    res = no_bg.compute()
    assert math.isnan(res["act_bg"]) and res["inverted"] is False
    assert res["fg_pixel_acc"] == pytest.approx(2 / 4) and res["act_in"] == pytest.approx(0.8)


# ---- sliding window -------------------------------------------------------------------------------------
class CountingScore:
    """A per-pixel score function (3 -> 2 channels) that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.stack([torch.sigmoid(x.sum(1)), x[:, 0] * x[:, 2]], 1)


def test_slide_inference_single_window() -> None:
    fn = CountingScore()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(slide_inference(fn, x, 32, 16), fn(x))
    small = torch.randn(2, 3, 20, 27)
    out = slide_inference(fn, small, 32, 16)
    assert out.shape == (2, 2, 20, 27)
    assert torch.equal(out, fn(F.pad(small, (0, 5, 0, 12)))[..., :20, :27])


def test_slide_inference_stitches_like_whole_image() -> None:
    fn = CountingScore()
    x = torch.randn(2, 3, 50, 70)
    out = slide_inference(fn, x, 32, 16)
    assert fn.calls == 1 and out.shape == (2, 2, 50, 70)
    torch.testing.assert_close(out, fn(x))
    fn_pad = CountingScore()  # taller than the window but narrower: padded in width only
    x = torch.randn(1, 3, 45, 20)
    torch.testing.assert_close(slide_inference(fn_pad, x, 32, 24), fn_pad(x))
    assert resize_short_side(torch.zeros(1, 3, 40, 60), 20).shape == (1, 3, 20, 30)


# ---- the Lightning callback -----------------------------------------------------------------------------
def write_folder_set(root: Path, n: int, intensity: int, seed: int) -> None:
    """A `folder`-layout set (background, a, b) of 32x32 images whose channel 0 / 1 marks class a / b with
    `intensity` (the fake model's score grows with it), masks equal to the marks, pixel (0, 0) ignored."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\na\nb\n")
    for i in range(n):
        coarse = torch.randint(0, 3, (4, 4), generator=g)
        label = coarse.repeat_interleave(8, 0).repeat_interleave(8, 1)  # (32, 32)
        image = torch.zeros(32, 32, 3, dtype=torch.uint8)
        image[..., 0][label == 1] = intensity
        image[..., 1][label == 2] = intensity
        mask = label.to(torch.uint8)
        mask[0, 0] = 255
        Image.fromarray(image.numpy()).save(root / "images" / f"img{i}.png")
        Image.fromarray(mask.numpy()).save(root / "masks" / f"img{i}.png")


class FolderData(L.LightningDataModule):
    """The datamodule interface the callback reads: eval_sets, one loader per set, normalize, image_size."""

    image_size = 16  # the "training size": the toy protocol resizes the 32x32 images to it

    def __init__(self, val_root: Path, test_root: Path) -> None:
        super().__init__()
        from synseg.data.benchmarks import build_eval_dataset

        self.sets = {
            "val": [build_eval_dataset("toy", val_root)],
            "test": [build_eval_dataset("toy", test_root)],
        }

    def eval_sets(self, split: str) -> list:
        return self.sets[split]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() / 255.0

    def val_dataloader(self) -> list[DataLoader]:
        from synseg.data.benchmarks.eval_sets import eval_loader

        return [eval_loader(ds, 4, 0, 0, 1) for ds in self.sets["val"]]

    def test_dataloader(self) -> list[DataLoader]:
        from synseg.data.benchmarks.eval_sets import eval_loader

        return [eval_loader(ds, 4, 0, 0, 1) for ds in self.sets["test"]]


class FakeScorer(torch.nn.Module):
    """What the callback needs of a Segmenter. Scores: a steep sigmoid of the marked channels around 0.5 of
    the full intensity."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.classes: list[str] = []

    def set_classes(self, names: list[str], templates: list[str] | None = None) -> None:
        self.classes = list(names)

    def class_scores(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((images[:, :2] - 0.5) * 4 * self.scale)  # (B, 2, h, w)


class FakeSegmenter(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.segmenter = FakeScorer()
        self.val_thresholds: dict[str, float] = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        return None

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        return None


class RecordingLogger:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def log_image(self, **kwargs: Any) -> None:
        self.calls.append(("image", kwargs))

    def log_table(self, **kwargs: Any) -> None:
        self.calls.append(("table", kwargs))


def test_callback_tests_at_the_threshold_selected_on_val(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Val marks at full intensity (scores 0.88 on marks), test marks at 60% (scores 0.60): the val-selected
    threshold is not the test set's own best, and the test must use it anyway."""
    write_folder_set(tmp_path / "val", 6, 255, seed=3)
    write_folder_set(tmp_path / "test", 6, 153, seed=4)
    rec = RecordingLogger()
    monkeypatch.setattr(cb_mod, "wandb_logger", lambda trainer: rec)
    callback = SegmentationEvalCallback({}, threshold=0.5, select_threshold_on_val=True, n_images=5)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model, data = FakeSegmenter(), FolderData(tmp_path / "val", tmp_path / "test")
    val = trainer.validate(model, datamodule=data, verbose=False)[0]
    for key in ("mIoU", "fg_pixel_acc", "image_top1", "act_in", "act_bg", "act_absent", "threshold"):
        assert f"val/toy/{key}" in val
    assert val["val/toy/fg_pixel_acc"] == 1.0 and model.segmenter.classes == ["a", "b"]
    val_results = model.eval_results["val"]["toy"]
    chosen = val_results["best_threshold"]
    assert chosen == max(val_results["mIoU_at"], key=lambda t: (val_results["mIoU_at"][t], -t))
    assert model.val_thresholds == {"toy": chosen}  # travels in the module's checkpoints
    # val mIoU is logged at the threshold val chose, with that threshold beside it, and per class
    assert val["val/toy/threshold"] == pytest.approx(chosen)
    assert val["val/toy/mIoU"] == pytest.approx(val_results["mIoU_at"][chosen], abs=1e-6)
    assert val_results["mIoU_fixed_threshold"] == pytest.approx(val_results["mIoU_at"][0.5], abs=1e-6)
    assert {"val/toy/iou/background", "val/toy/iou/a", "val/toy/iou/b"} <= set(val)

    test = trainer.test(model, datamodule=data, verbose=False)[0]
    assert test["test/toy/threshold"] == pytest.approx(chosen)
    # The test set's own best threshold differs and would score higher: the callback did not peek.
    grid = SegmentationEvalCallback({}, threshold=0.5, select_threshold_on_val=True)
    trainer.callbacks[0] = grid  # a fresh callback validating on the *test* set
    data.sets["val"] = data.sets["test"]
    trainer.validate(model, datamodule=data, verbose=False)
    own = model.eval_results["val"]["toy"]
    assert own["best_threshold"] != chosen
    assert test["test/toy/mIoU"] == pytest.approx(own["mIoU_at"][chosen], abs=1e-6)
    assert test["test/toy/mIoU"] < own["mIoU_at"][own["best_threshold"]]

    images = [kw for kind, kw in rec.calls if kind == "image"]
    assert len(images[0]["images"]) == 5 and images[0]["key"] == "val/toy/examples"
    assert images[0]["images"][0].shape == (32, 32, 3) and images[0]["caption"][0] == "img0"
    table = next(kw for kind, kw in rec.calls if kind == "table")
    assert table["key"] == "test/toy/per_class_iou" and [r[0] for r in table["data"]] == [
        "background",
        "a",
        "b",
    ]

    wandb = pytest.importorskip("wandb")  # the payloads are valid wandb objects (no run needed)
    masks = images[0]["masks"][0]
    wandb.Image(images[0]["images"][0], masks=masks)
    assert masks["ground_truth"]["class_labels"][255] == "ignore"
    wandb.Table(columns=table["columns"], data=table["data"])
    assert iou_table_rows({"x": float("nan")}) == [["x", None]]
    assert set(mask_overlays(np.zeros((2, 2)), np.zeros((2, 2)), {})) == {"prediction", "ground_truth"}
