"""`make compare`: argument checks (one line, non-zero exit), the statistics against hand computations, a
failed run reported with its log path, and a tiny end-to-end compare of every method writing every file."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from synseg.compare.methods import METHODS, PLANS, paired_comparisons
from synseg.compare.report import aggregate, markdown
from synseg.compare.runner import CompareError, parse_models, parse_seeds
from synseg.compare.stats import paired_delta, t975
from tests.conftest import ROOT
from tests.test_train_run import TINY
from tests.wandb_records import run_summary


def test_arguments_are_checked() -> None:
    assert parse_seeds("0 1,2") == [0, 1, 2]
    for bad in ("0 x", "", "1 1", "0.5"):
        with pytest.raises(CompareError, match="SEEDS"):
            parse_seeds(bad)
    assert parse_models("synseg maskclip synseg") == ["synseg", "maskclip"]
    with pytest.raises(CompareError, match="unknown \\['nope'\\]"):
        parse_models("maskclip nope")


@pytest.mark.parametrize("args", [["SEEDS=0 one"], ["MODELS=maskclip nope"]])
def test_make_compare_refuses_bad_input_with_one_line(args: list[str]) -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "compare", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode != 0
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith("compare: ") and ("SEEDS" in first or "MODELS" in first)


def test_existing_report_is_refused_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "reports" / "x").mkdir(parents=True)
    cmd = [
        sys.executable,
        "-m",
        "synseg.compare",
        "--name",
        "x",
        "--out",
        str(tmp_path / "reports"),
        "--check-only",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "OVERWRITE=1" in done.stderr
    assert subprocess.run([*cmd, "--overwrite"], cwd=ROOT).returncode == 0
    assert (tmp_path / "reports" / "x").is_dir()  # --check-only never deletes


def test_paired_delta_by_hand() -> None:
    a, b = {0: 0.30, 1: 0.25, 2: 0.35, 3: 0.9}, {0: 0.10, 1: 0.15, 2: 0.12}
    d = paired_delta(a, b)  # seeds 0..2 only
    deltas = [0.20, 0.10, 0.23]
    half = 4.303 * statistics.stdev(deltas) / math.sqrt(3)
    assert d["n"] == 3 and math.isclose(d["mean"], statistics.mean(deltas))
    assert math.isclose(d["low"], statistics.mean(deltas) - half) and math.isclose(
        d["high"], d["mean"] + half
    )
    assert paired_delta({0: 1.0}, {0: 0.5})["low"] is None and t975(100) == 1.96


def _row(method: str, seed: int, miou: float, status: str = "ok") -> dict:
    metrics = {"test/toy/mIoU": miou, "test/toy/per_class/circle": miou, "test/toy/act_in": 0.6,
               "test/toy/act_bg": 0.2, "reference/all_background": 0.06}  # fmt: skip
    row = {
        "method": method,
        "seed": seed,
        "seconds": 10.0,
        "log": f"logs/{method}-s{seed}.log",
        "status": status,
    }
    return row if status != "ok" else {**row, "metrics": metrics, "images_per_s": 5.0, "run_dir": "x"}


def test_aggregate_and_markdown_report_failures() -> None:
    rows = [
        _row("maskclip", 0, 0.1),
        _row("maskclip", 1, 0.2),
        _row("mixreorg", 0, 0.3),
        _row("mixreorg", 1, 0.5),
    ]
    rows += [_row("synseg", 0, 0.4), _row("synseg", 1, 0.0, "failed (exit 1)")]
    res = aggregate(rows)
    mr = res["methods"]["mixreorg"]
    assert mr["mIoU_per_seed"] == [0.3, 0.5] and math.isclose(mr["mIoU_std"], statistics.stdev([0.3, 0.5]))
    assert math.isclose(res["paired_deltas"]["mixreorg - maskclip"]["mean"], 0.25)
    assert res["paired_deltas"]["synseg - mixreorg"]["n"] == 1
    assert res["methods"]["synseg"]["failed"][0]["log"] == "logs/synseg-s1.log"
    text = markdown(res, {"name": "t", "seeds": [0, 1], "steps": None, "args": []})
    assert "seed 1 failed (exit 1): logs/synseg-s1.log" in text and "| captions |" in text


def test_tiny_compare_of_every_method_writes_every_file(tmp_path: Path) -> None:
    from synseg.models.registry import create_model

    decoder = tmp_path / "data" / "toyclip" / "synseg_head_dense.pt"  # stand-in for `make dense-decoder`
    decoder.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(create_model("synseg_head").state_dict(), decoder)
    overrides = [*TINY, f"paths.root_dir={tmp_path}", "total_steps=4", "trainer.val_check_interval=2"]
    cmd = [sys.executable, "-m", "synseg.compare", "--name", "tiny", "--seeds", "0"]
    cmd += [
        "--out",
        str(tmp_path / "reports"),
        "--log-dir",
        str(tmp_path / "logs"),
        "--args",
        " ".join(overrides),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "reports" / "tiny"
    files = {"report.md", "results.json", "compare.png", "curves.png", "gallery.png"}
    assert {p.name for p in out.iterdir()} == files
    res = json.loads((out / "results.json").read_text())
    compare = [m.name for m in PLANS["compare"]]
    assert list(res["methods"]) == compare
    curves = res["curves"]["methods"]  # val mIoU every 2 of 4 steps; training-free: one point at step 0
    assert res["curves"]["dataset"] == "toy" and set(curves) == set(compare)
    assert [p[0] for p in curves["synseg"]["0"]] == [2, 4] and [p[0] for p in curves["naclip"]["0"]] == [0]
    assert "## Learning curves" in (out / "report.md").read_text()
    trained = json.loads((tmp_path / "logs" / "compare" / "tiny" / "synseg-s0" / "metrics.json").read_text())
    assert trained["test/checkpoint"] == "last" and trained["best/step"] in (2, 4)  # best recorded anyway
    for name, m in res["methods"].items():
        assert m["supervision"] == METHODS[name].supervision and len(m["mIoU_per_seed"]) == 1
        assert 0.0 <= m["mIoU_mean"] <= 1.0 and m["seconds"] > 0 and m["per_class"]
    assert res["methods"]["mixreorg"]["mIoU_std"] == 0.0 and "mixreorg - maskclip" in res["paired_deltas"]
    # the same wandb group for every run, so the dashboard overlays them
    cfgs = [(tmp_path / "logs" / "compare" / "tiny" / f"{m}-s0" / "config.yaml").read_text() for m in compare]
    assert all("wandb_group: compare-tiny" in c for c in cfgs)
    # wandb names carry the compare's NAME, ids are unique per run folder
    assert all(f"run_name: tiny-{m}-s0" in c for m, c in zip(compare, cfgs, strict=True))
    runs = tmp_path / "logs" / "compare" / "tiny"
    ids = {json.loads((runs / f"{m}-s0" / "run.json").read_text())["wandb_id"] for m in compare}
    assert len(ids) == len(compare) and all(i.startswith("tiny-") for i in ids)
    # the report itself on the dashboard: a compare run in the runs' group, with its table and figures
    (report_run,) = (runs / "wandb").glob("offline-run-*/run-*.wandb")
    logged = run_summary(report_run)
    assert logged["job_type"] == "compare" and logged["group"] == "compare-tiny"
    assert {"compare/summary", "compare/paired_deltas"} <= set(logged["tables"])
    assert {"compare/compare", "compare/curves", "compare/gallery"} <= set(logged["images"])
    assert "synseg_weak" in done.stdout and "report:" in done.stdout


def test_compare_takes_the_data_and_its_val_test_sets() -> None:
    from synseg.compare.runner import data_overrides
    from tests.test_configs import compose_train

    extra = data_overrides("cc12m", ["voc20", "context59"], "/data/benchmarks")
    assert extra == [
        "data=cc12m",
        "val.datasets=[voc20,context59]",
        "val.test_datasets=[voc20,context59]",
        "val.data_root=/data/benchmarks",
    ]
    cfg = compose_train(["model=synseg", *extra])
    assert cfg.model.segmenter.backbone.model_name == "ViT-B-16" and list(cfg.val.test_datasets) == [
        "voc20",
        "context59",
    ]
    assert data_overrides("toy", None, None) == ["data=toy"]
    make = ["make", "-n", "--no-print-directory", "compare", "NAME=real", "DATA=cc12m"]
    make += ["DATASETS=voc20 context59", "DATA_ROOT=/data/benchmarks"]
    done = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, check=True)
    line = next(
        ln for ln in done.stdout.splitlines() if "-m synseg.compare" in ln and "--check-only" not in ln
    )
    assert '--data "cc12m"' in line and '--datasets "voc20 context59"' in line
    assert '--data-root "/data/benchmarks"' in line
    assert 'if [ "cc12m" = toy ]' in done.stdout  # the toy stand-ins are built for DATA=toy only


def test_report_names_the_test_set_it_is_about() -> None:
    rows = [{**_row("maskclip", 0, 0.1), "metrics": {"test/folder/mIoU": 0.1, "test/folder/act_in": 0.5}}]
    res = aggregate(rows)
    assert res["dataset"] == "folder" and res["methods"]["maskclip"]["mIoU_per_seed"] == [0.1]
    assert "| folder mIoU (mean ± std) |" in markdown(
        res, {"name": "t", "seeds": [0], "steps": None, "args": []}
    )


@pytest.mark.parametrize("plan", [p for p in PLANS if p != "compare"])
def test_ablation_plans_compose_and_compare_against_their_first_row(plan: str) -> None:
    """`make ablation PLAN=...`: every row's overrides compose with the real config (a renamed key fails
    here, not after an hour of runs), and the report's paired deltas are the plan's (its first row, or the
    budget and lr studies' own pairs)."""
    from omegaconf import OmegaConf

    from tests.test_configs import compose_train

    methods = PLANS[plan]
    for m in methods:
        cfg = compose_train([f"model={m.model}", *m.overrides])
        OmegaConf.to_container(cfg.model, resolve=True)
    names = [m.name for m in methods]
    pairs = paired_comparisons(plan, names)
    if plan == "budget":  # each 3000-step run against its 300-step run, every row against the dense init
        assert pairs[:3] == [("synseg_3000", "synseg"), ("synseg_weak_3000", "synseg_weak"),
                             ("mixreorg_3000", "mixreorg")]  # fmt: skip
        assert set(pairs[3:]) == {(n, "dense_init") for n in names[1:]}
        long = compose_train([f"model={methods[-1].model}", *methods[-1].overrides])
        assert (long.total_steps, long.trainer.max_steps, long.trainer.val_check_interval) == (
            3000,
            3000,
            300,
        )
    elif plan == "lr":
        assert ("synseg_lr1e-5", "dense_init") in pairs and ("synseg_lr1e-5", "synseg_lr1e-3") in pairs
        lrs = [compose_train(["model=synseg", *m.overrides]).model.optimizer.lr for m in methods[1:]]
        assert lrs == [1e-3, 1e-4, 1e-5]
    else:
        assert pairs == [(n, names[0]) for n in names[1:]]
    if plan == "mixing":
        cfg = compose_train(["model=mixreorg", *methods[1].overrides])
        assert cfg.model.segmenter.progressive is False
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "ablation", f"PLAN={plan}"], cwd=ROOT, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert f'--plan "{plan}" --name "ablation-{plan}"' in done.stdout
    weights = compose_train(
        ["model=synseg", *next(m for m in PLANS["loss"] if m.name == "synseg_wo_sep").overrides]
    )
    assert dict(weights.model.loss.weights) == {"align": 1.0, "cont": 1.0, "back": 1.0, "sep": 0.0}


def test_learning_curve_reads_each_validation_once(tmp_path: Path) -> None:
    from synseg.compare.curves import curves_markdown, learning_curves

    (tmp_path / "r" / "csv").mkdir(parents=True)
    (tmp_path / "r" / "csv" / "metrics.csv").write_text(
        "epoch,step,train/loss,val/toy/mIoU,test/toy/mIoU\n"
        "0,0,0.9,,\n0,1,,0.1,\n0,1,0.8,,\n0,3,,0.3,\n0,3,,,0.25\n"  # val after 2 and 4 steps
    )
    ok = {"status": "ok", "run_dir": str(tmp_path / "r"), "metrics": {"global_step": 4}}
    rows = [{"method": "synseg", "seed": 0, **ok},
            {"method": "synseg", "seed": 1, "status": "failed (exit 1)"}]  # fmt: skip
    curves = learning_curves(rows)
    assert curves == {"dataset": "toy", "methods": {"synseg": {"0": [[2, 0.1], [4, 0.3]]}}}
    assert "| synseg | 0.100 | 0.300 |" in curves_markdown(curves)


def test_report_has_an_ood_column_and_the_mixed_patch_accuracy(tmp_path: Path) -> None:
    """A second test set (toy_ood) is a column of the main table; MixReorg's last mixed-patch accuracy is a
    training diagnostic (mean over seeds)."""
    from synseg.compare.report import write_report

    rows = []
    for seed, (miou, ood, acc) in enumerate([(0.2, 0.1, 0.9), (0.3, 0.15, 0.8)]):
        for method in ("maskclip", "mixreorg"):
            row = _row(method, seed, miou)
            row["metrics"] = {
                **row["metrics"],
                "test/toy_ood/mIoU": ood,
                "test/toy_ood/per_class/circle": ood,
            }
            if method == "mixreorg":
                row["metrics"]["train/mix_patch_acc"] = acc
            rows.append(row)
    config = {"name": "t", "seeds": [0, 1], "steps": None, "args": []}
    text = write_report(tmp_path, rows, config, gallery=False)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["dataset"] == "toy" and res["other_datasets"]["toy_ood"]["methods"]["mixreorg"][
        "mIoU_mean"
    ] == (pytest.approx(0.125))
    assert "| toy mIoU (mean ± std) | per seed | toy_ood mIoU |" in text
    assert "| mixreorg | captions | 0.250 ± 0.071 | 0.200, 0.300 | 0.125 ± 0.035 |" in text
    assert res["methods"]["mixreorg"]["train_diagnostics"] == {"train/mix_patch_acc": pytest.approx(0.85)}
    assert res["methods"]["maskclip"]["train_diagnostics"] == {}
    assert "| mixreorg | 0.850 |" in text
    assert "Paired deltas on `toy_ood`:" in text and "| mixreorg - maskclip | 2 | 0.000 |" in text


def test_report_only_rebuilds_the_report_from_runs_on_disk(tmp_path: Path) -> None:
    """`--report-only` (REPORT_ONLY=1): the report of runs already under the run root, e.g. after adding the
    long runs of a study beside short runs made earlier; a missing run is reported, not fatal."""
    from synseg.compare.runner import main

    root = tmp_path / "logs" / "compare" / "r"
    for seed, miou in ((0, 0.2), (1, 0.3)):
        run = root / f"maskclip-s{seed}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("data:\n  batch_size: 4\n")
        (run / "metrics.json").write_text(json.dumps({"test/toy/mIoU": miou, "test/toy/n_images": 10}))
    args = [
        "--name",
        "r",
        "--models",
        "maskclip naclip",
        "--seeds",
        "0 1",
        "--log-dir",
        str(tmp_path / "logs"),
    ]
    args += ["--out", str(tmp_path / "reports"), "--report-only", "--no-gallery", "--no-wandb"]
    assert main(args) == 1  # naclip's runs are missing: reported as such
    res = json.loads((tmp_path / "reports" / "r" / "results.json").read_text())
    assert res["methods"]["maskclip"]["mIoU_per_seed"] == [0.2, 0.3]
    assert res["methods"]["naclip"]["failed"][0]["status"].startswith("missing")
    assert main([*args[:2], "--report-only", "--log-dir", str(tmp_path / "none")]) == 2
    done = subprocess.run(["make", "-n", "--no-print-directory", "ablation", "PLAN=budget", "REPORT_ONLY=1"],
                          cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    assert "--report-only" in done.stdout
