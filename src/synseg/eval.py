"""Zero-shot evaluation entry point: `python -m synseg.eval ckpt=... | method=maskclip datasets=[toy,voc21]`
(see `make eval` and configs/eval.yaml).

A short story: load the segmenter; per dataset build it, resolve its protocol, set the class names, run
the sliding-window evaluation, print a table with the protocol; write metrics.json, protocol.json, the
per-class CSVs and the resolved config into logs/eval/<run_name>/."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from synseg.data.benchmarks.eval_sets import TOY_SPLIT_SETS, eval_set_root
from synseg.errors import UserError, one_line
from synseg.evaluation.loading import CONFIG_DIR, LoadError, load_model, pick_device
from synseg.evaluation.protocol import build_protocol
from synseg.evaluation.results import flat_metrics, format_table, write_per_class_csv
from synseg.evaluation.runner import Normalizer, evaluate_dataset, set_protocol_classes

log = logging.getLogger("synseg.eval")


def default_run_name(ckpt: str | None, method: str | None) -> str:
    """logs/train/<run>/checkpoints/last.ckpt -> <run>; else the checkpoint stem, else the method name."""
    if ckpt:
        path = Path(ckpt)
        if path.parent.name == "checkpoints":
            return path.parent.parent.name
        return path.parent.name if path.name == "model.synseg" else path.stem
    return str(method or "eval")


if not OmegaConf.has_resolver("synseg_eval_run"):
    OmegaConf.register_new_resolver("synseg_eval_run", default_run_name)


def dataset_names(value: Any) -> list[str]:
    """`datasets` as a list: a list, or one string of names separated by spaces or commas."""
    items = [value] if isinstance(value, str) else list(value or [])
    names = [n for item in items for n in re.split(r"[\s,]+", str(item).strip()) if n]
    if not names:
        raise LoadError('DATASETS: empty; give e.g. DATASETS=toy or DATASETS="voc21 context59"')
    return list(dict.fromkeys(names))


def dataset_root(cfg: DictConfig, name: str) -> Path:
    """data_roots[name], else data_root, else the default (toy: data/toy/test; toy_dev / toy_ood:
    data/toy/dev|ood; others: data/)."""
    root = (cfg.get("data_roots") or {}).get(name) or cfg.get("data_root")
    if root:
        return Path(str(root))
    data_dir = Path(cfg.paths.data_dir)
    if name in ("toy", *TOY_SPLIT_SETS):
        return eval_set_root(name, "test", None, data_dir / "toy")
    return data_dir


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluates the configured model on every configured dataset; returns the flat metrics."""
    from synseg.data.benchmarks import benchmark_names, build_eval_dataset, collate_eval

    names = dataset_names(cfg.datasets)
    known = list(benchmark_names())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LoadError(f"DATASETS: unknown dataset {unknown[0]!r}; known: {' '.join(known)}")
    device = pick_device(str(cfg.device))
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    clip = OmegaConf.to_container(cfg.clip, resolve=True) if cfg.get("clip") else {}
    segmenter = load_model(cfg.ckpt, cfg.get("method"), clip, device)
    meta = dict(segmenter.config)
    normalize = Normalizer(segmenter.mean.flatten().tolist(), segmenter.std.flatten().tolist(), device)

    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    protocol_cfg = OmegaConf.to_container(cfg.protocol, resolve=True)
    metrics: dict[str, Any] = {}
    protocols: dict[str, Any] = {}
    per_dataset: dict[str, dict[str, Any]] = {}
    source = {"ckpt": cfg.ckpt, "method": cfg.get("method"), "segmenter": meta}
    for name in names:
        try:
            dataset = build_eval_dataset(name, dataset_root(cfg, name))
        except (FileNotFoundError, ValueError, KeyError) as err:
            message = str(err)
            raise LoadError(message if message.startswith(name) else f"{name}: {message}") from err
        try:
            protocol = build_protocol(
                name, dataset.has_background, protocol_cfg, meta.get("image_size"), meta.get("threshold")
            )
        except ValueError as err:
            raise LoadError(f"protocol for {name}: {err}") from err
        names = list(dataset.classes[1:] if dataset.has_background else dataset.classes)
        set_protocol_classes(segmenter, names, protocol)
        results = evaluate_dataset(
            segmenter.class_scores,
            dataset,
            protocol,
            normalize,
            collate_eval,
            batch_size=int(cfg.batch_size),
            num_workers=int(cfg.num_workers),
            save_pred=cfg.save_pred,
            progress=bool(cfg.progress),
            score_budget=float(cfg.get("score_budget", 1e8)),
        )
        print(format_table(name, results, protocol), flush=True)
        per_dataset[name] = results
        metrics.update(flat_metrics(name, results))
        protocols[name] = {**protocol.to_dict(), "root": str(dataset.root)}
        write_per_class_csv(run_dir / f"{name}_per_class.csv", results)
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        protocol_doc = {"source": source, "datasets": protocols}
        (run_dir / "protocol.json").write_text(json.dumps(protocol_doc, indent=2))
    if cfg.get("wandb", True):  # per-dataset metrics and per-class tables on the dashboard
        from synseg.wandb_runs import log_eval

        log_eval(run_dir, str(cfg.run_name), source, per_dataset)
    log.info("results: %s", run_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except UserError as err:  # bad checkpoint, dataset, mask or config value: one line, no traceback
        print(f"error: {one_line(err)}", file=sys.stderr, flush=True)
        raise SystemExit(err.exit_code) from None


if __name__ == "__main__":
    main()
