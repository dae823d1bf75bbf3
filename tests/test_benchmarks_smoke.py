"""Smoke runs of the capacity-planning benchmarks: `gpu_check.sh --cpu-smoke` and a tiny `ddp_scaling.py`.

They check that the scripts run and print their parseable lines with finite positive numbers; no timing
threshold (this machine is noisy): performance claims live in the scripts' output and docs/scaling.md. The
DDP run starts in the background when the module starts (and overlaps the gpu_check run under
`make test-slow`, where that one runs)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT

ENV = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def number(text: str, label: str) -> float:
    """The number printed after `label: ` on the last such line of `text`."""
    found = re.findall(rf"^{re.escape(label)}: ([-+0-9.eE]+|n/a)", text, flags=re.M)
    assert found, f"no line {label!r} in output:\n{text[-3000:]}"
    return float(found[-1]) if found[-1] != "n/a" else math.nan


def assert_positive(text: str, labels: list[str]) -> None:
    for label in labels:
        value = number(text, label)
        assert math.isfinite(value) and value > 0, f"{label}: {value}"


DDP_CMD = [
    sys.executable,
    "benchmarks/ddp_scaling.py",
    "--batch-size=2",
    "--steps=3",
    "--warmup=1",
    "--rounds=1",
]


@pytest.fixture(scope="module", autouse=True)
def ddp_run() -> Iterator[subprocess.Popen]:
    """The tiny ddp_scaling.py run, started in the background at module start; killed if left running."""
    proc = subprocess.Popen(
        DDP_CMD, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.mark.slow  # 30 s of the fast suite's 10-minute budget; `make test-slow` runs it
def test_gpu_check_cpu_smoke() -> None:
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--cpu-smoke"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "all parts passed" in out and "step precision: bf16" in out
    assert_positive(
        out,
        [
            "synseg/clip step ratio",
            "mixreorg/clip step ratio",
            "synseg training images/s",
            "synseg train step GFLOP/image",
            "eval ms/image (maskclip, fp32)",
            "eval synseg ms/image (fp32)",
            "real pipeline samples/s/core",
        ],
    )


def test_ddp_scaling_tiny(ddp_run: subprocess.Popen) -> None:
    out, _ = ddp_run.communicate(timeout=300)
    assert ddp_run.returncode == 0, out[-3000:]
    assert re.search(r"^ddp 2-proc efficiency: \d+\.\d\d$", out, flags=re.M), out[-3000:]
    assert_positive(
        out, ["1-proc step ms (median)", "2-proc step ms per process (median)", "ddp 2-proc efficiency"]
    )
