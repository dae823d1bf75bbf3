"""The embedded toy world: procedurally generated images, masks and noisy captions (see docs/toyworld.md)."""

from synseg.data.toy.captions import SYNONYMS
from synseg.data.toy.scene import SPLITS, ToySample, ToyWorldConfig, generate_sample
from synseg.data.toy.shapes import CATEGORIES
from synseg.data.toy.writers import write_folder, write_sample_sheet, write_shards

__all__ = [
    "CATEGORIES",
    "SPLITS",
    "SYNONYMS",
    "ToySample",
    "ToyWorldConfig",
    "generate_sample",
    "write_folder",
    "write_sample_sheet",
    "write_shards",
]
