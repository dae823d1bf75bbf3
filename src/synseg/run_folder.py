"""Run folders that never destroy each other: `logs/train/<run>` is created once, resumed on request, and
replaced only when asked (the old one is moved aside, never deleted).

`prepare_run_folder` decides, before anything is written, whether a run starts fresh, resumes (from which
checkpoint) or is refused with one line; `run.json` in the folder holds the run's wandb id (unique per run
folder, kept on resume, new after OVERWRITE=1). Only the launching process (global rank 0) decides; the other
ranks of a DDP job read its decision from the folder. No Lightning import here."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from synseg.errors import RunFolderError

LAST = Path("checkpoints") / "last.ckpt"
MARKERS = ("config.yaml", "metrics.json", "checkpoints", "csv", "run.json")  # what makes a folder a run
# Lightning's SLURM requeue checkpoints (hpc_ckpt_<n>.ckpt in the run folder) also count as checkpoints.
RESUME_VALUES = ("false", "true", "auto")


@dataclass(frozen=True)
class RunDecision:
    """What the run does with its folder: `ckpt_path` to resume from (None: a fresh start), its wandb id."""

    run_dir: Path
    ckpt_path: Path | None
    wandb_id: str
    moved_to: Path | None = None


def is_launcher() -> bool:
    """True in the process that owns the run folder: global rank 0 (torchrun, SLURM and Lightning's own
    launcher set these variables in the other processes)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        value = os.environ.get(var)
        if value not in (None, "", "0"):
            return False
    return True


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The run's most recent checkpoint: checkpoints/last.ckpt, or a newer `hpc_ckpt_<n>.ckpt` that
    Lightning saved on a SLURM requeue signal; None when there is neither."""
    candidates = [p for p in [run_dir / LAST, *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None


def existing_run(run_dir: Path) -> list[str]:
    """What a previous run left in `run_dir` (empty: none)."""
    return [m for m in MARKERS if (run_dir / m).exists()]


def describe(run_dir: Path, found: list[str]) -> str:
    parts = []
    for m in found:
        if m == "checkpoints" and (run_dir / LAST).is_file():
            parts.append(str(LAST))
        elif m != "run.json":
            parts.append(m + ("/" if (run_dir / m).is_dir() else ""))
    return ", ".join(parts) or "files"


def new_wandb_id(run_name: str) -> str:
    """A wandb run id unique to this run folder: the run name (wandb's characters) plus 8 hex digits."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in run_name)[:100]
    return f"{safe}-{uuid.uuid4().hex[:8]}"


def read_run_json(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def write_run_json(run_dir: Path, info: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".run.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
    os.replace(tmp, run_dir / "run.json")


def move_aside(run_dir: Path) -> Path:
    """Moves an old run folder to `<parent>/.overwritten/<name>-<UTC time>` (kept, not deleted)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    dest = run_dir.parent / ".overwritten" / f"{run_dir.name}-{stamp}"
    n = 1
    while dest.exists():
        n += 1
        dest = run_dir.parent / ".overwritten" / f"{run_dir.name}-{stamp}-{n}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(run_dir), str(dest))
    return dest


def prepare_run_folder(
    run_dir: str | Path,
    run_name: str,
    resume: str | bool = False,
    overwrite: bool = False,
    ckpt_path: str | None = None,
    launcher: bool | None = None,
) -> RunDecision:
    """Decides fresh / resume / refuse for `run_dir` (see the module docstring) and writes `run.json`.

    resume: false (a fresh run; refused when the folder holds a run, unless `overwrite`), true (continue from
    `checkpoints/last.ckpt`, which must exist), auto (resume when last.ckpt exists, else start fresh, moving a
    run that never reached a checkpoint aside: what a requeued SLURM job wants). `ckpt_path`: resume from that
    checkpoint instead (in this folder)."""
    run_dir = Path(run_dir)
    resume = str(resume).lower()
    if resume not in RESUME_VALUES:
        raise RunFolderError(f"resume: {resume!r}; expected one of {', '.join(RESUME_VALUES)}")
    launcher = is_launcher() if launcher is None else launcher
    last = newest_checkpoint(run_dir)
    if ckpt_path:
        ckpt = Path(ckpt_path)
        if not ckpt.is_file():
            raise RunFolderError(
                f"ckpt_path={ckpt}: no such file (expected logs/train/<run>/checkpoints/last.ckpt)"
            )
    elif resume == "true":
        if last is None:
            raise RunFolderError(
                f"RESUME=1: {run_dir / LAST} does not exist, nothing to resume (a run writes it at its first "
                "validation); start the run without RESUME=1"
            )
        ckpt = last
    elif resume == "auto" and last is not None:
        ckpt = last
    else:
        ckpt = None
    if not launcher:  # DDP ranks > 0: the launcher has decided; read its run.json
        return RunDecision(run_dir, ckpt, str(read_run_json(run_dir).get("wandb_id", "")))

    moved = None
    found = existing_run(run_dir)
    if ckpt is None and found:
        if overwrite or resume == "auto":
            moved = move_aside(run_dir)
        else:
            raise RunFolderError(
                f"RUN={run_name}: {run_dir} exists ({describe(run_dir, found)}); continue it with RESUME=1 "
                f"or replace it with OVERWRITE=1 (python -m synseg.train: resume=true or overwrite=true)"
            )
    if ckpt is not None and overwrite:
        raise RunFolderError(
            f"RUN={run_name}: RESUME=1 and OVERWRITE=1 together; choose one (resume keeps the folder)"
        )
    info = read_run_json(run_dir) if ckpt is not None else {}
    wandb_id = str(info.get("wandb_id") or new_wandb_id(run_name))
    history = list(info.get("starts", []))
    history.append(
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "from": str(ckpt or ""),
            "argv": sys.argv[1:],
        }
    )
    write_run_json(run_dir, {"run_name": run_name, "wandb_id": wandb_id, "starts": history})
    return RunDecision(run_dir, ckpt, wandb_id, moved)
