"""SynSeg Lab: weakly-supervised open-vocabulary semantic segmentation (library part).

Models, losses and data import without the training stack (Lightning, Hydra, wandb)."""

__version__ = "0.1.0"
