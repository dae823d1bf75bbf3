"""Every command the README and the docs print is composed here, without running it: each line of every
```bash block of README.md and docs/*.md (docs/scaling.md excepted: its owner checks it) and every command in
the first column of their tables.

- `make <target> ...` runs as `make -n`; for train / compare / ablation / eval / audit / export the
  `python -m ...` line it would run is composed in turn;
- Hydra apps (synseg.train, synseg.eval, synseg.data.audit; torchrun and the sbatch template reach
  synseg.train) are composed with `hydra.compose` from configs/train.yaml / eval.yaml / audit.yaml, resolved,
  and checked as the app checks them (weight files aside: they are built on first use);
- argparse CLIs (synseg.segment, synseg.export, synseg.compare, synseg.data.toy, synseg.data.convert,
  benchmarks/*.py) parse their arguments with their own parser; `make compare` / `make ablation` also compose
  the training run of every method the plan would start;
- `bash script.sh` is syntax-checked with `bash -n`.

Placeholders (`<run>`, N, G, R, HOST, P) are substituted. The README's "Real data and GPUs" commands must
also select what the README says: open_clip ViT-B-16 / openai, 224 px, CLIPSeg decoder init for SynSeg,
validation on a real benchmark under DATA_ROOT, and no toy file. The README's Python example runs on a
tiny exported model, and every `model.*` switch key the README and docs/methods.md name exists."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from tests.conftest import ROOT

SECTIONS = ("## Real data and GPUs", "## Run folders, resume and faults")
DOCUMENTS = (
    "README.md",
    *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md") if p.name != "scaling.md"),
)
WORD_PLACEHOLDERS = {"N": "2", "G": "8", "R": "0", "HOST": "127.0.0.1", "P": "29500"}
TEXT_PLACEHOLDERS = {"<run>": "synseg-toy-s0"}
COMMAND_WORDS = ("make", "python", "torchrun", "sbatch", "bash")
MAKE_APPS = {"train": "synseg.train", "compare": "synseg.compare", "ablation": "synseg.compare",
             "eval": "synseg.eval", "audit": "synseg.data.audit", "export": "synseg.export"}  # fmt: skip
REAL = ("DATA=cc3m", "DATA=cc12m", "data=cc12m", "clip=vit_b16")
HYDRA_GROUPS = ("data", "model", "clip", "val", "protocol", "trainer", "logger", "callbacks", "experiment",
                "debug", "paths")  # fmt: skip


# ---- the commands of the documents ------------------------------------------------------------------------
def bash_lines(block: str) -> list[str]:
    """Command lines of a ```bash block: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [ln.strip() for ln in joined.splitlines()]
    return [shlex.join(shlex.split(ln, comments=True)) for ln in lines if ln and not ln.startswith("#")]


def table_commands(text: str) -> list[str]:
    """Commands in backticks in the first column of markdown tables (e.g. the README's common commands);
    header rows are titles, not commands."""
    lines = text.splitlines()
    commands = []
    for line, below in zip(lines, [*lines[1:], ""], strict=True):
        if not line.startswith("|") or re.match(r"\|\s*:?-{3,}", line) or re.match(r"\|\s*:?-{3,}", below):
            continue
        for span in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if span.split()[0] in COMMAND_WORDS and len(span.split()) > 1:
                commands.append(shlex.join(shlex.split(span)))
    return commands


def document_commands(document: str) -> list[str]:
    text = (ROOT / document).read_text()
    commands = [c for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S) for c in bash_lines(block)]
    return list(dict.fromkeys(commands + table_commands(text)))


def section_commands() -> list[str]:
    """The commands of the README sections this test checks most closely (titles in SECTIONS)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for title in SECTIONS:
        start = text.index(title)
        end = text.find("\n## ", start + len(title))
        section = text[start : end if end != -1 else None]
        for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
            commands += bash_lines(block)
    return commands


ALL = [(doc, cmd) for doc in DOCUMENTS for cmd in document_commands(doc)]
COMMANDS = section_commands()


def substituted(command: str) -> list[str]:
    for old, new in TEXT_PLACEHOLDERS.items():
        command = command.replace(old, new)
    return [WORD_PLACEHOLDERS.get(w, w) for w in shlex.split(command)]


# ---- composing --------------------------------------------------------------------------------------------
@contextmanager
def hydra_app(config: str, overrides: list[str], tmp_path: Path) -> Iterator[DictConfig]:
    """The config a Hydra app would run with (HydraConfig set, as inside the app)."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config, overrides=[*overrides, f"paths.root_dir={tmp_path}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        yield cfg
    finally:
        HydraConfig.instance().cfg = None


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The app's config as plain data, every interpolation resolved (the `hydra` node left out)."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in cfg
        if key != "hydra"
    }


def check_overrides_landed(cfg: dict[str, Any], overrides: list[str]) -> None:
    """Every plain `key=value` override (not a config group) is the value the app sees."""
    for item in overrides:
        key, sep, value = item.lstrip("+").partition("=")
        if not sep or key in HYDRA_GROUPS or key.startswith("hydra.") or re.search(r"[\[\]{}'\",]", value):
            continue
        node: Any = cfg
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{item}: {key} is not in the composed config"
            node = node[part]
        expected: Any = {"true": True, "false": False, "null": None}.get(value, value)
        if isinstance(node, int | float) and not isinstance(node, bool):
            expected = float(value)
        assert node == expected or str(node) == value, f"{item}: the app sees {key}={node!r}"


def compose_train(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DictConfig:
    """configs/train.yaml with these overrides, resolved and validated as synseg.train does (the stand-in
    weight files are built on first use, so their existence is not required here)."""
    from synseg import config_checks

    monkeypatch.setattr(config_checks, "check_weight_files", lambda cfg: None)
    with hydra_app("train", args, tmp_path) as cfg:
        plain = resolved(cfg)
    config_checks.validate_train_config(plain)
    check_overrides_landed(plain, args)
    return cfg


def compose_eval(args: list[str], tmp_path: Path) -> DictConfig:
    """configs/eval.yaml: exactly one of ckpt / a training-free method, known datasets, a valid protocol per
    dataset."""
    import synseg.eval  # registers the run-name resolver
    from synseg.data.benchmarks.layouts import BENCHMARKS
    from synseg.evaluation.protocol import build_protocol
    from synseg.models.segmenter import TRAINING_FREE

    with hydra_app("eval", args, tmp_path) as cfg:
        plain = resolved(cfg)
    check_overrides_landed(plain, args)
    assert (plain["ckpt"] is None) != (plain["method"] is None), f"give ckpt= or method=: {args}"
    if plain["method"] is not None:
        assert plain["method"] in TRAINING_FREE, plain["method"]
    for name in synseg.eval.dataset_names(plain["datasets"]):
        assert name in BENCHMARKS, name
        spec = BENCHMARKS[name]
        build_protocol(name, spec.has_background or name == "toy", plain["protocol"], 64, 0.5)
    return cfg


def compose_audit(args: list[str], tmp_path: Path) -> DictConfig:
    with hydra_app("audit", args, tmp_path) as cfg:
        check_overrides_landed(resolved(cfg), args)
    return cfg


class Parsed(Exception):
    """Raised by the patched `ArgumentParser.parse_args`: the CLI parsed its arguments and stops there."""


def parse_only(
    main: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, *main_args: Any
) -> argparse.Namespace:
    """The namespace `main` parses (its parser is built inside it); nothing after the parsing runs."""
    original = argparse.ArgumentParser.parse_args

    def parse_args(
        self: argparse.ArgumentParser, args: Any = None, namespace: Any = None
    ) -> argparse.Namespace:
        raise Parsed(original(self, args, namespace))

    with monkeypatch.context() as patch, pytest.raises(Parsed) as parsed:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
        main(*main_args)
    return parsed.value.args[0]


def compose_compare(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """`python -m synseg.compare ...` through its own main() with the training processes replaced: the
    arguments must pass its checks, and the `synseg.train` command of every method of the plan composes."""
    from synseg.compare import report, runner

    started: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> SimpleNamespace:
        started.append(cmd)
        return SimpleNamespace(returncode=1)

    where = ["--out", str(tmp_path / "reports"), "--log-dir", str(tmp_path / "logs"), "--no-wandb"]
    with monkeypatch.context() as patch:
        patch.setattr(runner.subprocess, "run", fake_run)
        patch.setattr(report, "write_report", lambda *a, **k: "")
        status = runner.main([*args, *where])
    assert started and status == 1, f"python -m synseg.compare {shlex.join(args)}: refused (exit {status})"
    per_method = {}
    for cmd in started:  # one run per method is enough: the seeds differ only in seed= / run_name=
        overrides = cmd[cmd.index("synseg.train") + 1 :]
        key = tuple(o for o in overrides if not o.startswith(("seed=", "run_name=", "hydra.run.dir=")))
        per_method.setdefault(key, overrides)
    for overrides in per_method.values():
        compose_train(overrides, tmp_path, monkeypatch)
    return started


def run_benchmark_parser(script: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark script's argparse parser on these arguments (its module imported, main() parsing only)."""
    assert script.is_file(), script
    environ, path = dict(os.environ), list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location(f"readme_benchmark_{script.stem}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setattr(sys, "argv", [str(script), *args])
        parse_only(module.main, monkeypatch)
    finally:  # some scripts pin BLAS threads or extend sys.path at import: leave the session as it was
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:] = path


def compose_module(module: str, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What `python -m <module> <args>` would run with, checked as the module checks it."""
    if module == "synseg.train":
        return compose_train(args, tmp_path, monkeypatch)
    if module == "synseg.eval":
        return compose_eval(args, tmp_path)
    if module == "synseg.data.audit":
        return compose_audit(args, tmp_path)
    if module == "synseg.compare":
        return compose_compare(args, tmp_path, monkeypatch)
    if module == "synseg.segment":
        from synseg.models.segmenter import TRAINING_FREE
        from synseg.segment import build_parser, parse_classes

        ns = build_parser().parse_args(args)
        parse_classes(ns.classes)
        if ns.model is not None:
            assert ns.model in TRAINING_FREE and (ROOT / "configs" / "clip" / f"{ns.clip}.yaml").is_file()
        return ns
    if module == "synseg.export":
        from synseg.export import main

        return parse_only(main, monkeypatch, args)
    if module == "synseg.data.toy":
        from synseg.data.toy.cli import build_parser

        return build_parser().parse_args(args)
    if module == "synseg.data.convert":
        from synseg.data.convert.cli import build_parser

        return build_parser().parse_args(args)
    raise AssertionError(f"python -m {module}: no composer for this module; add one to this test")


def make_dry_run(words: list[str]) -> str:
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", *words[1:]], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, f"make -n {shlex.join(words[1:])}: {done.stderr.strip()}"
    return done.stdout


def sbatch_command(words: list[str]) -> list[str]:
    """The `python -m synseg.train ...` that scripts/train.sbatch runs with these sbatch arguments."""
    template = (ROOT / "scripts" / "train.sbatch").read_text()
    fixed = re.search(r"srun .*?-m synseg\.train(.*?)\"\$@\"", template, flags=re.S).group(1)
    fixed = fixed.replace("$SLURM_NNODES", "2").replace("$SLURM_NTASKS_PER_NODE", "8")
    fixed = fixed.replace("\\\n", " ").replace('"$RUN_NAME"', "job")
    return ["-m", "synseg.train", *shlex.split(fixed), *words[words.index("scripts/train.sbatch") + 1 :]]


def compose_command(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """(module, what it composes to) for one documented command; asserts on anything that would not run."""
    words = substituted(command)
    if words[0] == "make":
        stdout = make_dry_run(words)
        target = next(w for w in words[1:] if "=" not in w and not w.startswith("-"))
        if target not in MAKE_APPS:
            return "make", stdout
        module = MAKE_APPS[target]
        lines = [ln for ln in stdout.splitlines() if f"-m {module} " in ln and "--check-only" not in ln]
        assert lines, f"make -n {target}: no `python -m {module}` line in\n{stdout}"
        words = shlex.split(lines[-1])  # the target's own recipe comes after the stand-ins it depends on
    elif words[0] == "sbatch":
        words = sbatch_command(words)
    elif words[0] == "bash":
        done = subprocess.run(["bash", "-n", words[1]], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return "bash", None
    elif words[0] == "python" and words[1].startswith("benchmarks/"):
        run_benchmark_parser(ROOT / words[1], words[2:], monkeypatch)
        return words[1], None
    assert "-m" in words, f"{command}: not a make target, a script or a python -m module"
    module = words[words.index("-m") + 1]
    args = words[words.index("-m") + 2 :]
    return module, compose_module(module, args, tmp_path, monkeypatch)


# ---- tests ------------------------------------------------------------------------------------------------
def test_the_documents_have_commands() -> None:
    assert len(COMMANDS) >= 12
    assert any(c.startswith("torchrun") for c in COMMANDS) and any(c.startswith("sbatch") for c in COMMANDS)
    readme = [c for doc, c in ALL if doc == "README.md"]
    assert len(readme) >= 40 and any(c.startswith("python -m synseg.segment") for c in readme)
    assert {doc for doc, _ in ALL} >= {"README.md", "docs/results.md", "docs/eval-protocol.md"}


@pytest.mark.parametrize(("document", "command"), ALL, ids=[f"{d}: {c[:90]}" for d, c in ALL])
def test_documented_command_composes(
    document: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compose_command(command, tmp_path, monkeypatch)


@pytest.mark.parametrize("command", [c for c in COMMANDS if any(r in c for r in REAL)])
def test_real_data_command_selects_the_real_setup(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, cfg = compose_command(command, tmp_path, monkeypatch)
    if module != "synseg.train":
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


def test_braces_in_a_shard_url_reach_the_config_unexpanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = next(c for c in COMMANDS if "{00000..01242}" in c)
    _, cfg = compose_command(command, tmp_path, monkeypatch)
    assert cfg.data.shards.urls == "/data/cc12m/{00000..01242}.tar"


def test_make_audit_composes_the_audit_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    command = next(c for c in COMMANDS if c.startswith("make audit"))
    module, cfg = compose_command(command, tmp_path, monkeypatch)
    assert module == "synseg.data.audit"
    assert cfg.data.shards.urls == "/data/cc12m/*.tar" and cfg.world_size == 4 and cfg.steps == 50


def test_make_eval_of_a_training_free_model_passes_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, cfg = compose_command("make eval MODEL=maskclip", tmp_path, monkeypatch)
    assert module == "synseg.eval" and cfg.method == "maskclip" and cfg.ckpt is None


def test_make_ablation_starts_every_method_of_its_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synseg.compare.methods import PLAN_SEEDS, PLANS

    _, started = compose_command("make ablation PLAN=loss", tmp_path, monkeypatch)
    assert len(started) == len(PLANS["loss"]) * len(PLAN_SEEDS["loss"])
    assert any("model.loss.weights.sep=0.0" in cmd for cmd in started)


SWITCH_KEY = re.compile(r"`(model\.(?!synseg`)[\w.]+)`")  # model.synseg: the export file


def test_every_switch_key_the_docs_name_exists(tmp_path: Path) -> None:
    """The `model.*` keys of the README and docs/methods.md are keys of a model config (synseg ... naclip)."""
    keys = {
        k for doc in ("README.md", "docs/methods.md") for k in SWITCH_KEY.findall((ROOT / doc).read_text())
    }
    assert {"model.loss.weights.sep", "model.segmenter.head.prior", "model.fss_source"} <= keys
    models = []
    for name in ("synseg", "synseg_weak", "mixreorg", "maskclip", "naclip"):
        with hydra_app("train", [f"model={name}"], tmp_path) as cfg:
            models.append(cfg)
    missing = [
        k for k in keys if all(OmegaConf.select(cfg, k, default="<missing>") == "<missing>" for cfg in models)
    ]
    assert not missing, f"keys named in the docs but absent from every model config: {missing}"


def test_the_readme_python_example_runs(tmp_path: Path) -> None:
    """The README's `Segmenter` example on a tiny exported model: (B, 3, H, W) floats in [0, 1] give (B, H, W)
    int64 labels, 0 background, k the k-th class."""
    import torch

    from synseg.models import Segmenter
    from synseg.models.toyclip import build_open_clip

    torch.manual_seed(0)
    weights = tmp_path / "toyclip-vit-p8c.pt"
    torch.save(build_open_clip("toyclip-vit-p8c").state_dict(), weights)
    clip = {
        "model_name": "toyclip-vit-p8c",
        "pretrained": str(weights),
        "image_size": 64,
        "extract_layers": [0, 1, 2],
    }
    segmenter = Segmenter.training_free("maskclip", clip)
    segmenter.threshold = 0.4
    exported = segmenter.save(tmp_path / "model.synseg")
    text = (ROOT / "README.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    path = re.search(r'Segmenter\.load\("([^"]+)"\)', example).group(1)
    assert path == "logs/train/<run>/model.synseg"
    namespace: dict[str, Any] = {"images": torch.rand(2, 3, 64, 80)}
    exec(example.replace(path, str(exported)), namespace)  # the README's own example, as printed
    labels = namespace["labels"]
    assert labels.shape == (2, 64, 80) and labels.dtype == torch.int64
    assert 0 <= int(labels.min()) and int(labels.max()) <= len(namespace["seg"].class_names)
