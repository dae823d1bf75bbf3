"""Shared fixtures: tiny toy folders and shards written on the fly (tests never use the network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def toy_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data root with toy/val (24 images) and toy/test (24 images)."""
    from synseg.data.toy import write_folder

    root = tmp_path_factory.mktemp("toydata")
    write_folder(root / "toy" / "val", "val", 24, seed=0, progress=False)
    write_folder(root / "toy" / "test", "test", 24, seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def toy_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 tar shards of 6 toy training samples each (48 samples)."""
    from synseg.data.toy import write_shards

    out = tmp_path_factory.mktemp("shards")
    write_shards(out, "train", 48, seed=0, shard_size=6, progress=False)
    return out
