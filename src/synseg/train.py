"""Training entry point: `python -m synseg.train model=NAME data=toy seed=0 run_name=...` (see `make train`).

A short story: check the config; decide the run folder (fresh, resumed from its last checkpoint, or refused);
seed; instantiate datamodule, model, callbacks, loggers, trainer; fit; test; write the resolved config and
`metrics.json` into the run folder. A bad input ends in one line on stderr (exit 2; 1 for a run that had to
stop), never a traceback; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from synseg.config_checks import validate_train_config
from synseg.errors import CheckpointError, ConfigError, RunFolderError, UserError, one_line
from synseg.run_folder import RunDecision, is_launcher, prepare_run_folder

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


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Writes a JSON file atomically (a kill never leaves half a metrics.json)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def check_resume_checkpoint(ckpt: Path, cfg: DictConfig) -> None:
    """A checkpoint to resume from must load weights-only, come from the same model and backbone, and leave
    steps to train."""
    from synseg.checkpoint_files import load_checkpoint_file

    state = load_checkpoint_file(ckpt, what="ckpt_path")
    if not isinstance(state, dict) or "global_step" not in state:
        raise CheckpointError(f"ckpt_path={ckpt}: not a training checkpoint (no global_step)")
    if int(state["global_step"]) >= int(cfg.total_steps):
        raise RunFolderError(
            f"RESUME=1: {ckpt} finished at step {state['global_step']} of total_steps={cfg.total_steps}; "
            "nothing to resume (raise total_steps to train on)"
        )
    hp = state.get("hyper_parameters", {})
    want = OmegaConf.to_container(cfg.model, resolve=True)
    theirs_seg, ours_seg = hp.get("segmenter") or {}, want.get("segmenter") or {}
    theirs = (theirs_seg.get("backbone") or {}).get("model_name") or hp.get("model_name")
    ours = (ours_seg.get("backbone") or {}).get("model_name") or want.get("model_name")
    if theirs and ours and theirs != ours:
        raise CheckpointError(f"ckpt_path={ckpt}: trained with backbone {theirs}, this run uses {ours}")
    if theirs_seg.get("kind") and ours_seg.get("kind") and theirs_seg["kind"] != ours_seg["kind"]:
        raise CheckpointError(
            f"ckpt_path={ckpt}: a checkpoint of a {theirs_seg['kind']} model, this run is {ours_seg['kind']}"
        )


def best_checkpoint(trainer: Any) -> dict[str, Any] | None:
    """{"best/path", "best/step", "best/score"} of the run's best.ckpt (highest monitored val mIoU), or None
    when the run kept none (no validation, or nothing trained)."""
    from synseg.checkpoint_files import load_checkpoint_file

    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    if not path or not Path(path).is_file():
        return None
    step = int(load_checkpoint_file(path, what="best.ckpt").get("global_step", -1))
    return {"best/path": str(path), "best/step": step, "best/score": to_float(callback.best_model_score)}


def decide_run_folder(cfg: DictConfig) -> tuple[RunDecision, bool]:
    """Fresh, resumed or refused (see synseg.run_folder); sets the wandb id of the decision and the
    run's tags.
    Also returns whether to upload the exported model (`logger.wandb.log_model`)."""
    decision = prepare_run_folder(
        cfg.paths.output_dir,
        str(cfg.run_name),
        cfg.get("resume", False),
        bool(cfg.get("overwrite", False)),
        cfg.get("ckpt_path"),
    )
    if decision.moved_to is not None:
        log.info("previous run folder moved to %s", decision.moved_to)
    if decision.ckpt_path is not None:
        check_resume_checkpoint(decision.ckpt_path, cfg)
        log.info("resuming from %s", decision.ckpt_path)
    wandb = (cfg.get("logger") or {}).get("wandb")
    upload = bool(wandb is not None and wandb.get("log_model"))
    if wandb is not None:
        if decision.wandb_id:
            wandb.id = decision.wandb_id  # unique per run folder, kept on resume
        wandb.tags = [model_name(cfg), str(cfg.data.name), supervision(cfg)]
        wandb.log_model = False  # Lightning's own upload is of checkpoints; we upload the exported model
    return decision, upload


def model_name(cfg: DictConfig) -> str:
    """The model config this run composed (configs/model/<name>.yaml)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return str(HydraConfig.get().runtime.choices.model)
    except ValueError:  # composed outside a Hydra app (tests)
        return str(cfg.model.get("_target_", "model")).rsplit(".", 1)[-1]


def supervision(cfg: DictConfig) -> str:
    """What the run learns from (every report says it): none, captions, dense masks, dense-pretrained."""
    target = str(cfg.model.get("_target_", ""))
    if target.endswith("MaskClipModule"):
        return "none"
    if target.endswith("DensePretrainModule"):
        return "dense-masks"
    if cfg.model.get("decoder_init") == "clipseg":
        return "dense-pretrained"
    return "captions"


def run(cfg: DictConfig) -> dict[str, float]:
    """Trains and tests one run as configured; returns the final metrics."""
    validate_train_config(OmegaConf.to_container(cfg, resolve=True))
    os.environ.setdefault("WANDB_MODE", "offline")  # wandb on, offline, unless the user chose a mode
    decision, upload_model = decide_run_folder(cfg)
    run_dir = decision.run_dir
    if is_launcher():
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    import warnings

    import lightning as L  # the training stack, after every check that needs none of it

    # The datamodule restores the stream position itself (see data.stream_state); Lightning cannot see it.
    warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")

    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    if cfg.get("train", True) or cfg.get("test", True):
        datamodule.check_eval_data()  # a missing val/test set: one line now, not after hours of training
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
        ckpt = str(decision.ckpt_path) if decision.ckpt_path else None
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
        metrics.update({k: to_float(v) for k, v in trainer.callback_metrics.items()})
    elif cfg.get("test", True) and hasattr(model, "segmenter"):
        trainer.validate(model, datamodule=datamodule)  # training-free: val still selects the threshold
        metrics.update({k: to_float(v) for k, v in trainer.callback_metrics.items()})
    if cfg.get("test", True):
        best = best_checkpoint(trainer)  # recorded either way; tested on when test_ckpt=best
        if best is not None:
            metrics.update(best)
        on_best = best if cfg.get("test_ckpt", "best") == "best" else None
        trainer.test(model, datamodule=datamodule, ckpt_path=on_best["best/path"] if on_best else None)
        metrics.update({k: to_float(v) for k, v in trainer.callback_metrics.items()})
        metrics["test/checkpoint"] = "best" if on_best else "last"
        for split, by_set in getattr(model, "eval_results", {}).items():
            for dataset, results in by_set.items():
                for name, iou in results.get("per_class_iou", {}).items():
                    metrics[f"{split}/{dataset}/per_class/{name}"] = float(iou)
    metrics["global_step"] = trainer.global_step
    has_toy_test = "toy" in (cfg.get("val") or {}).get("test_datasets", [])
    if trainer.is_global_zero and cfg.get("test", True) and hasattr(model, "segmenter") and has_toy_test:
        from synseg.reporting import reference_levels, summary_table

        refs = reference_levels(cfg.paths.data_dir, datamodule.test_root, model.backbone.patch_size)
        metrics.update({f"reference/{k}": v for k, v in refs.items() if v is not None})
        print(summary_table(cfg.run_name, metrics, refs))
    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
        if hasattr(model, "export"):
            exported = model.export(metrics, run_dir)
            if exported is not None and upload_model:
                log_model_artifact(trainer, exported, str(cfg.run_name))
        log.info("run folder: %s", run_dir)
        log.info(
            "metrics: %s",
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in sorted(metrics.items())}),
        )
    for lg in trainer.loggers:  # close the wandb run here (every record written), not at interpreter exit
        if type(lg).__name__ == "WandbLogger" and getattr(lg, "_experiment", None) is not None:
            lg.experiment.finish()
    return metrics


def log_model_artifact(trainer: Any, path: Path, run_name: str) -> None:
    """Uploads the exported model to the run's wandb logger as a `model` artifact (with `log_model=true`)."""
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            artifact = wandb.Artifact(name=f"{run_name}-model", type="model", metadata={"file": path.name})
            artifact.add_file(str(path))
            lg.experiment.log_artifact(artifact)


def report_user_error(err: BaseException) -> int:
    """Prints a user error as one line on stderr; returns its exit status."""
    print(f"error: {one_line(err)}", file=sys.stderr, flush=True)
    return getattr(err, "exit_code", 2)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    from hydra.errors import InstantiationException

    try:
        run(cfg)
    except UserError as err:
        sys.exit(report_user_error(err))
    except InstantiationException as err:  # a constructor's own ValueError: one line naming the config node
        cause = err.__cause__
        if isinstance(cause, UserError | ValueError):
            sys.exit(report_user_error(ConfigError(one_line(cause))))
        raise


if __name__ == "__main__":
    main()
