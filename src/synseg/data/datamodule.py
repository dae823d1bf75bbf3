"""`CaptionDataModule`: the one LightningDataModule every method trains on.

Training: image-caption batches from the toy world, local tar shards or a Hugging Face stream, tagged into
categories (see `caption_stream`). Validation / test: the sets of the `val` config (the toy folders, or real
benchmarks under DATA_ROOT), one loader per set, every image on exactly one rank (see `eval_sets`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from synseg.data.caption_stream import CaptionStream, PromptTokenizer
from synseg.data.benchmarks import EvalDataset
from synseg.data.dense_toy import DenseToyStream
from synseg.data.eval_sets import eval_loader, load_eval_sets
from synseg.data.sources import SOURCES, HFSource, ShardSource, ToySource
from synseg.data.tagging import CategoryTagger
from synseg.data.transforms import normalize_for
from synseg.models.clip_configs import STANDIN_CLIP, preprocess_cfg

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
        prompt_template: str = "a photo of a {}.",
        toy: dict | None = None,
        shards: dict | None = None,
        hf: dict | None = None,
        tagger: dict | None = None,
        val: dict | None = None,
        eval_batch_size: int = 64,
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"data.source: unknown source {source!r}; expected one of {', '.join(SOURCES)}")
        self.save_hyperparameters(logger=False)
        self.toy_cfg = {
            "world_seed": 0,
            "image_size": 64,
            "root": "data/toy",
            "n_val": 200,
            "n_test": 500,
            **(toy or {}),
        }
        self.tagger_cfg = {"max_categories": 4, **(tagger or {})}
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
        self.skipped_total: dict[str, int] = {}

    # ---- data on disk -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Writes the toy val/test folders a run uses when they are missing (local rank 0, by Lightning)."""
        from synseg.data.toy import write_folder

        for split, root in (("val", self.val_root), ("test", self.test_root)):
            if "toy" not in self.val_cfg["datasets" if split == "val" else "test_datasets"]:
                continue
            if root.is_dir() and (root / "classes.txt").is_file():
                continue
            log.info("writing toy %s split to %s", split, root)
            write_folder(root, split, self.toy_cfg[f"n_{split}"], self.toy_cfg["world_seed"])

    # ---- training stream ----------------------------------------------------------------------------
    def build_source(self) -> Any:
        hp = self.hparams
        if hp.source == "dense":
            return None  # see train_dataset
        if hp.source == "toy":
            return ToySource(seed=hp.seed, split="train", image_size=self.toy_cfg["image_size"])
        if hp.source == "shards":
            cfg = dict(hp.shards or {})
            if not cfg.get("urls"):
                raise ValueError("data.shards.urls: missing; expected a tar glob such as data/shards/*.tar")
            return ShardSource(cfg["urls"], seed=hp.seed, shuffle_buffer=cfg.get("shuffle_buffer", 1000))
        cfg = dict(hp.hf or {})
        if not cfg.get("path"):
            raise ValueError("data.hf.path: missing; expected a dataset name such as pixparse/cc3m-wds")
        return HFSource(
            cfg["path"],
            cfg.get("name"),
            cfg.get("split", "train"),
            cfg.get("data_files"),
            seed=hp.seed,
            shuffle_buffer=cfg.get("shuffle_buffer", 1000),
        )

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None:
            self.rank, self.world_size = self.trainer.global_rank, self.trainer.world_size
        if stage in (None, "fit") and not hasattr(self, "source"):
            self.source = self.build_source()
            if self.hparams.source == "dense":
                return
            self.tagger = CategoryTagger(**self.tagger_cfg)
            log.info("caption tagger pipeline: %s", self.tagger.pipeline_name)

    def train_dataset(self) -> CaptionStream | DenseToyStream:
        hp = self.hparams
        remaining = hp.total_steps - self.start_step
        if remaining <= 0:
            raise ValueError(
                f"data.total_steps: {hp.total_steps} leaves no batch after step {self.start_step}"
            )
        if hp.source == "dense":  # masks of the disjoint `dense` split, for the stand-in CLIPSeg decoder
            return DenseToyStream(
                hp.batch_size,
                remaining,
                self.transform,
                seed=self.toy_cfg["world_seed"],
                image_size=self.toy_cfg["image_size"],
                start_step=self.start_step,
            )
        return CaptionStream(
            self.source,
            hp.batch_size,
            remaining,
            self.tagger,
            PromptTokenizer(hp.backbone, hp.prompt_template),
            self.transform,
            self.tagger_cfg["max_categories"],
            self.rank,
            self.world_size,
            self.start_step,
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
        step = self.trainer.global_step if self.trainer is not None else self.start_step
        return {"global_step": int(step), "skipped": dict(self.skipped_total)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start_step = int(state.get("global_step", 0))
        self.skipped_total = dict(state.get("skipped", {}))
