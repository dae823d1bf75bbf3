"""Every command of the README's "Real data and GPUs" and "Run folders, resume and faults" sections composes
(through `make -n` for make targets, the sbatch template for sbatch, the Hydra app for python/torchrun lines),
and the real-data ones select what the README says: open_clip ViT-B-16 / openai, 224 px, CLIPSeg decoder
init for SynSeg, validation on a real benchmark under DATA_ROOT, and no toy file."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import ROOT

SECTIONS = ("## Real data and GPUs", "## Run folders, resume and faults")
PLACEHOLDERS = {"N": "2", "G": "8", "R": "0", "HOST": "127.0.0.1", "P": "29500"}
REAL = ("DATA=cc3m", "DATA=cc12m", "data=cc12m", "clip=vit_b16")


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for title in SECTIONS:
        start = text.index(title)
        end = text.find("\n## ", start + len(title))
        section = text[start : end if end != -1 else None]
        for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
            lines = [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
            commands += [shlex.join(shlex.split(ln, comments=True)) for ln in lines]
    return commands


def overrides_of(command: str) -> tuple[str, list[str]]:
    """(config name, Hydra overrides) that a README command runs."""
    words = shlex.split(command)
    if words[0] == "make":
        make = ["make", "-n", "--no-print-directory", *words[1:]]
        done = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, check=True)
        line = next(ln for ln in done.stdout.splitlines() if "-m synseg.train model=" in ln)
        words = shlex.split(line)
    elif words[0] == "sbatch":
        template = (ROOT / "scripts" / "train.sbatch").read_text()
        fixed = re.search(r"srun .*?-m synseg\.train(.*?)\"\$@\"", template, flags=re.S).group(1)
        fixed = fixed.replace("$SLURM_NNODES", "2").replace("$SLURM_NTASKS_PER_NODE", "8")
        words = ["-m", "synseg.train", *shlex.split(fixed.replace("\\\n", " ").replace('"$RUN_NAME"', "job")),
                 *words[words.index("scripts/train.sbatch") + 1 :]]  # fmt: skip
    words = [PLACEHOLDERS.get(w, w) for w in words]
    module = words[words.index("-m") + 1]
    args = words[words.index(module) + 1 :]
    return {"synseg.train": "train", "synseg.data.audit": "audit"}[module], args


COMMANDS = readme_commands()


def test_the_sections_have_commands() -> None:
    assert len(COMMANDS) >= 12
    assert any(c.startswith("torchrun") for c in COMMANDS) and any(c.startswith("sbatch") for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_composes(command: str, tmp_path: Path) -> None:
    config, args = overrides_of(command)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config, overrides=[*args, f"paths.root_dir={tmp_path}"])
    if config == "audit":
        assert cfg.world_size == 4 and cfg.num_workers == 2 and cfg.steps == 50
        return
    if not any(r in command for r in REAL):
        return
    model = cfg.model
    assert (
        model.segmenter.backbone.model_name == "ViT-B-16" and model.segmenter.backbone.pretrained == "openai"
    ), command
    assert cfg.data.image_size == 224 and cfg.data.backbone == "ViT-B-16"
    if model.get("decoder_init") is not None:
        assert model.decoder_init == "clipseg" and model.decoder_ckpt == "CIDAS/clipseg-rd64-refined"
        assert model.segmenter.text_condition == "raw" and model.segmenter.head.ffn_dim == 2048
    if "val=none" in command:
        assert list(cfg.val.datasets) == [] and list(cfg.val.test_datasets) == []
    else:
        assert list(cfg.val.datasets) == ["voc20"] and cfg.val.data_root == "/data/benchmarks", command
    used = OmegaConf.to_yaml(model, resolve=True) + OmegaConf.to_yaml(cfg.val, resolve=True)
    assert "toyclip" not in used and "/toy" not in used, used  # no toy file in a real run
    if "experiment=synseg_cc12m" in command:
        assert cfg.trainer.precision == "bf16-mixed" and cfg.total_steps == 20000


def test_braces_in_a_shard_url_reach_the_config_unexpanded(tmp_path: Path) -> None:
    command = next(c for c in COMMANDS if "{00000..01242}" in c)
    _, args = overrides_of(command)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[*args, f"paths.root_dir={tmp_path}"])
    assert cfg.data.shards.urls == "/data/cc12m/{00000..01242}.tar"


def test_make_audit_composes_the_audit_app(tmp_path: Path) -> None:
    args = "ARGS=data.shards.urls=/data/cc12m/*.tar world_size=4 num_workers=2 steps=50"
    make = ["make", "-n", "--no-print-directory", "audit", "DATA=shards", args]
    done = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, check=True)
    line = next(ln for ln in done.stdout.splitlines() if "-m synseg.data.audit" in ln)
    words = shlex.split(line)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "audit", overrides=[*words[words.index("synseg.data.audit") + 1 :], f"paths.root_dir={tmp_path}"]
        )
    assert cfg.data.shards.urls == "/data/cc12m/*.tar" and cfg.world_size == 4 and cfg.steps == 50
