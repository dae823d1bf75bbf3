"""Every config group option composes with the main config and instantiates (configs cannot rot)."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from synseg.train import CONFIG_DIR, instantiate_list

GROUPS = ("data", "model", "trainer", "logger", "callbacks", "paths", "debug", "experiment")
OPTIONS = [
    (g, p.stem)
    for g in GROUPS
    for p in sorted((Path(CONFIG_DIR) / g).glob("*.yaml"))
    if not p.stem.startswith("_")
]  # _name.yaml: building blocks, not options


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_every_group_has_options() -> None:
    assert {g for g, _ in OPTIONS} == set(GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(
    group: str, option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if option == "slurm":  # Lightning reads the job's layout from SLURM's variables (as srun sets them)
        slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "t", "SLURM_NODELIST": "n1"}
        slurm.update({"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"})
        for key, value in slurm.items():
            monkeypatch.setenv(key, value)
    cfg = compose_train([f"{group}={option}", f"paths.root_dir={tmp_path}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.run_name = "t"  # a Hydra app names it from hydra.runtime.choices (see the run-folder test)
        if group == "trainer" and cfg.trainer.get("accelerator") == "gpu":  # no GPU in CI: same config on CPU
            cfg.trainer.accelerator, cfg.trainer.devices = "cpu", 1
            cfg.trainer.pop("precision", None)
        cfg.clip.pretrained = None  # the cached stand-ins (or hub weights) are not needed to instantiate
        if cfg.model.get("decoder_init") == "clipseg":
            cfg.model.decoder_init = "random"
        if group == "trainer" and option in ("ddp_sim", "slurm", "ddp"):
            cfg.trainer.devices, cfg.trainer.num_nodes = 1, 1  # a 2-process trainer: keep it light
    node = cfg[group] if group in ("data", "model", "trainer") else None
    if group in ("callbacks", "logger"):
        objs = instantiate_list(cfg[group])
        assert len(objs) == len([v for v in cfg[group].values() if "_target_" in v])
    elif node is not None:
        obj = hydra.utils.instantiate(node)
        assert obj is not None
    else:  # paths / debug / experiment: the whole config must still resolve and its parts instantiate
        hydra.utils.instantiate(cfg.data)
        hydra.utils.instantiate(cfg.model)


def test_real_data_configs_point_at_the_hub_with_the_real_backbone() -> None:
    for name, path in (("cc3m", "pixparse/cc3m-wds"), ("cc12m", "pixparse/cc12m-wds")):
        cfg = compose_train([f"data={name}", "model=synseg"])
        assert cfg.data.source == "hf" and cfg.data.hf.path == path and cfg.data.hf.data_files is None
        assert cfg.data.backbone == "ViT-B-16" and cfg.data.image_size == 224
        assert (
            cfg.model.segmenter.backbone.model_name == "ViT-B-16"
            and cfg.model.segmenter.backbone.pretrained == "openai"
        )
        assert cfg.model.decoder_ckpt == "CIDAS/clipseg-rd64-refined" and cfg.val.datasets == ["voc20"]
        assert cfg.data.batch_size == 64


def test_run_folder_is_named_once_from_model_data_seed() -> None:
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_train(["seed=3"])
    HydraConfig.instance().set_config(cfg)  # what a Hydra app does before resolving the run folder
    try:
        assert cfg.run_name == "synseg-toy-s3"  # `python -m synseg.train` runs what `make train` runs
        assert cfg.hydra.run.dir.endswith("logs/train/synseg-toy-s3")
        other = compose_train(["model=mixreorg", "data=shards"])
        HydraConfig.instance().set_config(other)
        assert other.run_name == "mixreorg-shards-s0"
    finally:
        HydraConfig.instance().cfg = None
