"""`CaptionDataModule`: the one LightningDataModule every method trains on.

Training: image-caption batches from the toy world, webdataset tar shards (local, pipe: or https://, one
set or a weighted mix) or a Hugging Face stream, tagged into categories (see `caption_stream`); the stream
positions of consumed batches go into the checkpoint so a resume continues the data exactly
(`stream_state`). Validation / test: the sets of the `val` config (the toy folders, or real
benchmarks under DATA_ROOT), one loader per set, every image on exactly one rank (see `eval_sets`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from synseg.clip_configs import STANDIN_CLIP, preprocess_cfg
from synseg.data.benchmarks import EvalDataset
from synseg.data.benchmarks.eval_sets import TOY_SPLIT_SETS, eval_loader, load_eval_sets
from synseg.data.train.caption_stream import CaptionStream, CaptionTokenizer
from synseg.data.train.dense_stream import DenseToyStream
from synseg.data.train.records import DecodeOptions
from synseg.data.train.sources import SOURCES, ShardSource, ToySource
from synseg.data.train.stream_state import StreamPositions
from synseg.data.train.tagging import CategoryTagger
from synseg.data.transforms import normalize_for
from synseg.errors import ConfigError

log = logging.getLogger(__name__)


class CaptionDataModule(L.LightningDataModule):
    """Shared caption DataModule. `total_steps` batches per rank; `start_step` is restored on resume."""

    def __init__(
        self,
        source: str = "toy",
        name: str = "toy",
        batch_size: int = 64,
        total_steps: int = 1000,
        num_workers: int = 2,
        seed: int = 0,
        backbone: str = STANDIN_CLIP,
        pretrained: str | None = None,
        image_size: int | None = None,
        toy: dict | None = None,
        shards: dict | None = None,
        hf: dict | None = None,
        tagger: dict | None = None,
        val: dict | None = None,
        eval_batch_size: int = 64,
        faults: dict | None = None,
        decode: dict | None = None,
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ConfigError(f"data.source: unknown source {source!r}; expected one of {', '.join(SOURCES)}")
        self.save_hyperparameters(logger=False)
        self.toy_cfg = {
            "world_seed": 0,
            "image_size": 64,
            "root": "data/toy",
            "n_val": 200,
            "n_test": 500,
            "n_dev": 500,
            **(toy or {}),
        }
        self.toy_cfg.setdefault("n_ood", self.toy_cfg["n_test"])  # the shifted test split: as large as test
        self.tagger_cfg = {"max_categories": 4, **(tagger or {})}
        self.max_consecutive_skips = parse_faults(faults)
        self.decode_options = DecodeOptions.from_config(decode)
        self.positions = StreamPositions()
        self.start_step = 0
        self.rank, self.world_size = 0, 1
        cfg = preprocess_cfg(backbone, pretrained)
        if image_size:
            cfg["size"] = (image_size, image_size)
        self.transform = normalize_for(cfg)
        self.val_cfg = {"datasets": ["toy"], "test_datasets": ["toy"], "data_root": None, "max_images": None}
        self.val_cfg.update({k: v for k, v in (val or {}).items() if k in self.val_cfg})
        self.val_root = Path(self.toy_cfg["root"]) / "val"  # the toy folders (written by prepare_data)
        self.test_root = Path(self.toy_cfg["root"]) / "test"
        self._eval_sets: dict[str, list[EvalDataset]] = {}

    # ---- data on disk -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Writes the toy val/test/dev/ood folders a run uses when they are missing (local rank 0, by
        Lightning)."""
        from synseg.data.toy import write_folder

        val, test = self.val_cfg["datasets"] or [], self.val_cfg["test_datasets"] or []
        used = {*val, *test}
        folders = [("val", self.val_root, "toy" in val), ("test", self.test_root, "toy" in test)]
        folders += [(s, Path(self.toy_cfg["root"]) / s, n in used) for n, s in TOY_SPLIT_SETS.items()]
        for split, root, needed in folders:
            if not needed:
                continue
            if root.is_dir() and (root / "classes.txt").is_file():
                continue
            log.info("writing toy %s split to %s", split, root)
            write_folder(root, split, self.toy_cfg[f"n_{split}"], self.toy_cfg["world_seed"])

    # ---- training stream ----------------------------------------------------------------------------
    def build_source(self) -> Any:
        """The training source of `data.source` (None for `dense`, see `train_dataset`)."""
        hp = self.hparams
        if hp.source == "dense":
            return None
        if hp.source == "toy":
            return ToySource(seed=hp.seed, split="train", image_size=self.toy_cfg["image_size"])
        if hp.source == "shards":
            return ShardSource.from_config(dict(hp.shards or {}), seed=hp.seed)
        from synseg.data.train.hf_source import HFSource

        return HFSource.from_config(dict(hp.hf or {}), seed=hp.seed)

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None:
            self.rank, self.world_size = self.trainer.global_rank, self.trainer.world_size
        if stage in (None, "fit") and not hasattr(self, "source"):
            self.source = self.build_source()
            if self.hparams.source == "dense":
                return
            self.tagger = CategoryTagger(**self.tagger_cfg)
            log.info("caption tagger pipeline: %s", self.tagger.pipeline_name)

    @property
    def num_lanes(self) -> int:
        """Record streams per rank: one per DataLoader worker (one without workers)."""
        return max(1, int(self.hparams.num_workers))

    def _fingerprint(self) -> str | None:
        source = getattr(self, "source", None)
        return source.fingerprint() if source is not None else None

    def train_dataset(self) -> CaptionStream | DenseToyStream:
        hp = self.hparams
        remaining = hp.total_steps - self.start_step
        if remaining <= 0:
            raise ConfigError(
                f"data.total_steps: {hp.total_steps} leaves no batch after step {self.start_step}"
            )
        lanes = self.positions.resume(
            hp.source, self._fingerprint(), self.rank, self.world_size, self.num_lanes
        )
        if hp.source == "dense":  # masks of the disjoint `dense` split, for the stand-in CLIPSeg decoder
            return DenseToyStream(
                hp.batch_size,
                remaining,
                self.transform,
                seed=self.toy_cfg["world_seed"],
                image_size=self.toy_cfg["image_size"],
                start_step=self.start_step,
                rank=self.rank,
                world_size=self.world_size,
            )
        if self.rank == 0 and hasattr(self.source, "plan"):
            for line in self.source.plan(self.world_size, self.num_lanes):
                log.info(line)
        if self.rank == 0 and self.start_step > 0:
            restored = sum(s is not None for s in lanes)
            log.info(
                "data: the training stream resumes at batch %d (%d of %d lane positions restored; each lane "
                "re-reads at most its current shard up to the position and one shuffle block)",
                self.start_step,
                restored,
                len(lanes),
            )
        return CaptionStream(
            self.source,
            hp.batch_size,
            remaining,
            self.tagger,
            CaptionTokenizer(hp.backbone),
            self.transform,
            self.tagger_cfg["max_categories"],
            self.rank,
            self.world_size,
            self.start_step,
            lane_states=lanes,
            decode_options=self.decode_options,
            max_consecutive_skips=self.max_consecutive_skips,
        )

    def train_dataloader(self) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            self.train_dataset(),
            batch_size=None,
            num_workers=workers,
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning calls this once per consumed batch: records the training stream's position."""
        if isinstance(batch, dict) and isinstance(batch.get("stream"), dict):
            self.positions.consumed(batch.pop("stream"))
        return batch

    # ---- segmentation val / test --------------------------------------------------------------------
    def eval_sets(self, split: str) -> list[EvalDataset]:
        """The val (a fixed subset of `val.max_images` each) or test sets, loaded once; EvalDataError when one
        is missing (`check_eval_data` raises it before training starts)."""
        if split not in self._eval_sets:
            names = self.val_cfg["datasets" if split == "val" else "test_datasets"]
            max_images = self.val_cfg["max_images"] if split == "val" else None
            self._eval_sets[split] = load_eval_sets(
                list(names or []), split, self.val_cfg["data_root"], self.toy_cfg["root"], max_images
            )
        return self._eval_sets[split]

    def check_eval_data(self, splits: tuple[str, ...] = ("val", "test")) -> None:
        """Loads every configured val/test set (toy folders are written first): fails early, in one line."""
        self.prepare_data()
        for split in splits:
            self.eval_sets(split)

    def _eval_loaders(self, split: str) -> list[DataLoader]:
        workers = min(self.hparams.num_workers, 1)
        return [
            eval_loader(ds, self.hparams.eval_batch_size, workers, self.rank, self.world_size)
            for ds in self.eval_sets(split)
        ]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")

    @property
    def image_size(self) -> int:
        """The training image size (the toy and folder sets are evaluated at it)."""
        return int(self.transform.size)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) images of an eval batch -> float, normalised like the training images."""
        x = images.float().div(255.0)
        return (x - self.transform.mean.to(x.device)) / self.transform.std.to(x.device)

    @property
    def class_names(self) -> list[str]:
        """Label names of the first val set (label 0 = "background" when it has one)."""
        sets = self.eval_sets("val") or self.eval_sets("test")
        return list(sets[0].classes) if sets else []

    # ---- resume ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The stream positions (see `stream_state`); a collective under DDP, as Lightning calls it on
        every rank."""
        step = self.trainer.global_step if self.trainer is not None else self.positions.next_batch
        return self.positions.state_dict(
            self.hparams.source, self._fingerprint(), self.rank, self.world_size, self.num_lanes, step
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the stream restarts at the checkpoint's step, each lane at its saved position (checked
        against this run's layout and data in `train_dataset`)."""
        self.start_step = self.positions.load(state)


def parse_faults(cfg: dict | None) -> int:
    """`data.faults.max_consecutive_skips` (records or shards in a row without a usable sample before the
    stream stops with DataStreamError)."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - {"max_consecutive_skips"})
    if unknown:
        raise ConfigError(f"data.faults.{unknown[0]}: unknown key; expected max_consecutive_skips")
    limit = cfg.get("max_consecutive_skips", 1000)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"data.faults.max_consecutive_skips: expected an integer >= 1, got {limit!r}")
    return limit
