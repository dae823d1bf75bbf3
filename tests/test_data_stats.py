"""DataStatsCallback and the datamodule's stream state under a real Lightning Trainer: skip / conversion
totals in callback_metrics (what metrics.json is written from), summed over ranks once, restored on resume;
a run stopped at a checkpoint and resumed trains on exactly the batches of an uninterrupted run."""

from __future__ import annotations

import types
from pathlib import Path

import lightning as L
import torch

from synseg.lit.data_stats import KEYS, DataStatsCallback
from tests.test_data_sources import _jpeg, good_shard, write_tar
from tests.test_datamodule import make_dm


class KeyRecorder(L.LightningModule):
    """The smallest trainable module; records the sample keys of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[str]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        assert "stream" not in batch  # the datamodule took the stream position before the transfer
        self.seen.append(list(batch["keys"]))
        return (self.w - batch["images"].mean()).pow(2).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def shard_set(root: Path) -> Path:
    for s in range(3):
        good_shard(root / f"g{s}.tar", [f"g{s}-{i}" for i in range(4)])
    members = [
        ("x0.jpg", b"garbage"),
        ("x0.txt", b"a box"),
        ("x1.png", b"\x89PNG broken"),
        ("x1.txt", b"a disc"),
    ]
    members += [("x2.jpg", _jpeg(5, 20)), ("x2.txt", b"\xff\xfe bad")]
    write_tar(root / "x.tar", members)
    return root


def fit(dm, steps: int, ckpt_dir: Path, ckpt_path: str | None = None) -> tuple[KeyRecorder, L.Trainer]:
    model = KeyRecorder()
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=3, save_top_k=-1)
    trainer = L.Trainer(
        max_steps=steps, callbacks=[DataStatsCallback(), checkpoint], logger=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1, limit_val_batches=0, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model, trainer


def test_counts_reach_callback_metrics_and_a_resume_continues_data_and_counts(
    tmp_path: Path, toy_folders: Path
) -> None:
    shards = {"urls": str(shard_set(tmp_path) / "*.tar"), "shuffle_buffer": 5}

    def dm():
        return make_dm(toy_folders, "shards", world=1, workers=2, steps=6, batch=2, shards=shards)

    full_model, full = fit(dm(), 6, tmp_path / "full")
    metrics = {k: float(v) for k, v in full.callback_metrics.items()}
    assert set(KEYS) <= set(metrics)  # every reason, zeros included
    assert metrics["data/skipped/image_undecodable"] == 2 and metrics["data/skipped/caption_not_utf8"] == 1
    assert metrics["data/skipped_total"] == 3 and metrics["data/skipped/shard_broken"] == 0
    assert len(full_model.seen) == 6

    _, first = fit(dm(), 3, tmp_path / "part")  # stops at step 3 with a checkpoint, as a killed run would
    ckpt = str(tmp_path / "part" / "epoch=0-step=3.ckpt")
    saved = torch.load(ckpt, weights_only=True)  # plain containers only
    assert (
        saved["callbacks"]["DataStatsCallback"]["totals"]["data/skipped_total"]
        == first.callback_metrics["data/skipped_total"]
    )
    assert saved["CaptionDataModule"]["next_batch"] == 3
    resumed_model, resumed = fit(dm(), 6, tmp_path / "resumed", ckpt_path=ckpt)
    assert resumed_model.seen == full_model.seen[3:]
    assert {k: float(v) for k, v in resumed.callback_metrics.items() if k in KEYS} == {
        k: metrics[k] for k in KEYS
    }


def test_totals_are_reduced_once_and_restored_on_rank_zero_only() -> None:
    logged, reduced = {}, []

    def reduce(t: torch.Tensor, reduce_op: str) -> torch.Tensor:
        reduced.append((t.clone(), reduce_op))
        return t * 2  # two ranks with the same counts

    module = types.SimpleNamespace(device=torch.device("cpu"), log_dict=lambda d, **kw: logged.update(d))
    batch = {"skipped": {"image_undecodable": 2}, "converted": {"cmyk": 1}, "no_category": 1}
    for rank, restored in ((0, 5), (1, 0)):
        cb = DataStatsCallback()
        cb.load_state_dict({"totals": {"data/skipped/image_undecodable": 5, "data/skipped_total": 5}})
        trainer = types.SimpleNamespace(global_rank=rank, strategy=types.SimpleNamespace(reduce=reduce))
        cb.on_train_batch_end(trainer, module, None, batch, 0)
        sent = dict(zip(KEYS, reduced[-1][0].tolist(), strict=True))
        assert reduced[-1][1] == "sum" and sent["data/skipped/image_undecodable"] == 2 + restored
        assert sent["data/converted/cmyk"] == 1 and sent["data/no_category_total"] == 1
        assert logged["data/skipped/image_undecodable"] == 2 * (2 + restored) and set(logged) == set(KEYS)
        assert cb.state_dict()["totals"]["data/skipped_total"] == 2 * (2 + restored)
    assert len(reduced) == 2  # one collective per batch
