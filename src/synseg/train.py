"""Training entry point: `python -m synseg.train model=NAME data=toy seed=0 run_name=...` (see `make train`).

A short story: seed; instantiate datamodule, model, callbacks, loggers, trainer; fit; test with the last
checkpoint; write the resolved config and `metrics.json` into the run folder."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from synseg.models.registry import is_model, list_models

log = logging.getLogger("synseg.train")
CONFIG_DIR = os.environ.get("SYNSEG_CONFIG_DIR", str(Path(__file__).resolve().parents[2] / "configs"))


def instantiate_list(cfg: DictConfig | None) -> list[Any]:
    """Instantiates every `_target_` node of a config group such as callbacks or logger."""
    return [
        hydra.utils.instantiate(c)
        for c in (cfg or {}).values()
        if isinstance(c, DictConfig) and "_target_" in c
    ]


def to_float(value: Any) -> float | Any:
    return float(value.item()) if hasattr(value, "item") else value


def finalize_checkpoint_meta(run_dir: Path, metrics: dict[str, Any]) -> None:
    """`last.ckpt` is written before the last validation runs, so its `synseg_meta` threshold may lag; set it
    to the threshold the test used (the one selected on val), which `make eval` reuses on the toy set."""
    import torch

    from synseg.lit.segmenter_base import META_KEY

    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    threshold = metrics.get("test/toy/threshold")
    if not ckpt_path.is_file() or threshold is None:
        return
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if META_KEY in ckpt:
        ckpt[META_KEY]["threshold"] = float(threshold)
        torch.save(ckpt, ckpt_path)


def run(cfg: DictConfig) -> dict[str, float]:
    """Trains and tests one run as configured; returns the final metrics."""
    if not is_model(cfg.model.get("arch", "")):
        raise SystemExit(
            f"model.arch: unknown model {cfg.model.get('arch')!r}; registered: {', '.join(list_models())}"
        )
    os.environ.setdefault("WANDB_MODE", "offline")  # wandb on, offline, unless the user chose a mode
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True)

    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=instantiate_list(cfg.get("callbacks")),
        logger=instantiate_list(cfg.get("logger")) or False,
    )
    for lg in trainer.loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    metrics: dict[str, float] = {}
    if cfg.get("train", True) and getattr(model, "requires_training", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics.update({k: to_float(v) for k, v in trainer.callback_metrics.items()})
    elif cfg.get("test", True) and hasattr(model, "segment"):
        trainer.validate(model, datamodule=datamodule)  # training-free: val still selects the threshold
        metrics.update({k: to_float(v) for k, v in trainer.callback_metrics.items()})
    if cfg.get("test", True):
        trainer.test(model, datamodule=datamodule)
        metrics.update({k: to_float(v) for k, v in trainer.callback_metrics.items()})
        for split, by_set in getattr(model, "eval_results", {}).items():
            for dataset, results in by_set.items():
                for name, iou in results.get("per_class_iou", {}).items():
                    metrics[f"{split}/{dataset}/per_class/{name}"] = float(iou)
    metrics["global_step"] = trainer.global_step
    has_toy_test = "toy" in (cfg.get("val") or {}).get("test_datasets", [])
    if trainer.is_global_zero and cfg.get("test", True) and hasattr(model, "segment") and has_toy_test:
        from synseg.reporting import reference_levels, summary_table

        refs = reference_levels(cfg.paths.data_dir, datamodule.test_root, model.backbone.patch_size)
        metrics.update({f"reference/{k}": v for k, v in refs.items() if v is not None})
        print(summary_table(cfg.run_name, metrics, refs))
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        if hasattr(model, "export"):
            model.export(metrics)
        finalize_checkpoint_meta(run_dir, metrics)
        log.info("run folder: %s", run_dir)
        log.info(
            "metrics: %s",
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in sorted(metrics.items())}),
        )
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
