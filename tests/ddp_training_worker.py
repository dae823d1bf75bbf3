"""k optimiser steps of each model through Lightning's own Trainer, for tests/test_ddp.py: run it plainly for
1 process x B images, or under `torchrun --nproc-per-node 2` (Lightning's DDP strategy, gloo) for 2 processes
x B/2 images each. Rank 0 writes the trainable weights of every model before and after training to
OUT/<model>-w<world>.pt.

    python tests/ddp_training_worker.py OUT BATCH STEPS OPTIMIZER model [model ...]

OPTIMIZER `sgd` (plain SGD, lr 0.1, no warm-up: each update is proportional to the gradient, so a wrong
reduction shows in the weights) or `config` (the model's own AdamW schedule)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OVERRIDES = {  # tiny shapes; random backbones (no cached stand-ins needed)
    "synseg": ["model=synseg", "model.decoder_init=random", "clip.pretrained=null"],
    "synseg_weak": ["model=synseg_weak", "clip.pretrained=null"],
    "mixreorg": ["model=mixreorg", "clip.pretrained=null"],
    "toyclip": ["model=toyclip", "model.grayscale_p=" + os.environ.get("GRAY", "0.5")],  # global grey draws
}


SGD = ["model.optimizer._target_=torch.optim.SGD", "model.optimizer.lr=0.1", "model.warmup_steps=0"]


def train_one(model_name: str, batch: int, steps: int, world: int, out: Path, root: str, sgd: bool) -> None:
    import hydra
    import lightning as L

    from synseg.lit.rng_state import GlobalRngState

    overrides = [
        *OVERRIDES[model_name],
        f"paths.root_dir={root}",
        f"data.batch_size={batch}",
        "data.num_workers=0",
        "data.tagger.cache_dir=null",
        "val=none",
        f"total_steps={steps}",
    ]
    if sgd:
        overrides += SGD + (["~model.optimizer.betas"] if model_name == "toyclip" else [])
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    L.seed_everything(0, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=world,
        strategy="ddp" if world > 1 else "auto",
        max_steps=steps,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[GlobalRngState()],  # as in configs/callbacks/default.yaml
    )
    init = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == steps, trainer.global_step
    if trainer.is_global_zero:
        final = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        torch.save({"init": init, "final": final}, out / f"{model_name}-w{world}.pt")


def main() -> None:
    out, batch, steps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    sgd, models = sys.argv[4] == "sgd", sys.argv[5:]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        for name in models:
            train_one(name, batch, steps, world, out, root, sgd)


if __name__ == "__main__":
    main()
