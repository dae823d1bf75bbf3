"""Data audit: what every rank and worker of a planned run would read, before the run.

`python -m synseg.data.audit data=shards data.shards.urls=... world_size=4 num_workers=2 steps=50`
(configs/audit.yaml composes the same `data` group as training). On the CPU, without a model or a Trainer,
it replays each slot's training stream (the same lanes, block shuffle, mixing and decoding as
`CaptionStream`; captions are not tagged or tokenised) for `steps` batches per rank, prints one line per
slot as it finishes, a table, and these plain lines for scripts:

    rank R batches N        (one per rank)
    unique samples N        (distinct (url, key) put into batches)
    duplicates N            (samples put into batches more than once, counted beyond the first)
    never reached N         (complete samples in the shards that no slot read, used or skipped; "n/a"
                             for the toy world, or with inventory=false)
    skipped N               (every skip, then one `skipped/<reason> N` line per reason)

Exit status 1 when ranks would get unequal batch counts or a slot fails (its error is printed in one
line), 2 for a bad configuration."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from synseg.data.train.caption_stream import next_samples
from synseg.data.train.records import SkipCounter
from synseg.errors import UserError, one_line

CONFIG_DIR = os.environ.get("SYNSEG_CONFIG_DIR", str(Path(__file__).resolve().parents[3] / "configs"))


@dataclass
class SlotReport:
    """What one rank x worker slot yielded within the audited steps."""

    rank: int
    worker: int
    batches: int = 0
    samples: list[tuple[str, str]] = field(default_factory=list)  # (url, key) put into batches
    reached: set[tuple[str, str]] = field(default_factory=set)  # every record read, used or skipped
    shards: list[str] = field(default_factory=list)  # shard URLs in the order they were first read
    skipped: Counter = field(default_factory=Counter)
    error: str | None = None


def _watch(records: Iterator[dict[str, Any]], report: SlotReport) -> Iterator[dict[str, Any]]:
    for rec in records:
        url, key = str(rec.get("__url__", "")), str(rec.get("__key__", ""))
        report.reached.add((url, key))
        if url not in report.shards:
            report.shards.append(url)
        yield rec


def audit_slot(dm: Any, source: Any, rank: int, worker: int, world: int, steps: int) -> SlotReport:
    """Replays the batches of slot (rank, worker) of a run starting at step 0."""
    report, n_lanes, size = SlotReport(rank, worker), dm.num_lanes, dm.hparams.batch_size
    my_batches = range(worker, steps, n_lanes)
    if getattr(source, "is_toy", False):
        for k in my_batches:
            first = (k * world + rank) * size
            report.samples += [("toy", f"{source.split}-{first + i:09d}") for i in range(size)]
            report.batches += 1
        report.reached = set(report.samples)
        return report
    skips = SkipCounter(limit=dm.max_consecutive_skips, source=f"{source.name} (rank {rank} worker {worker})")
    lane = source.lane(rank, world, worker, n_lanes, None, skips)
    records = _watch(iter(lane), report)
    try:
        for _ in my_batches:
            samples = next_samples(records, lane, size, skips, dm.decode_options)
            report.samples += [(s["url"], s["key"]) for s in samples]
            report.batches += 1
    except UserError as err:
        report.error = one_line(err)
    report.skipped = Counter(skips.counts)
    return report


def _short(url: str) -> str:
    return url.rsplit("/", 1)[-1] or url


def _table(reports: list[SlotReport]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="data audit: per rank x worker")
    for col in ("rank", "worker", "batches", "samples", "unique", "skipped", "shards read"):
        table.add_column(col)
    for r in reports:
        shards = ", ".join(_short(u) for u in r.shards[:6]) + (" ..." if len(r.shards) > 6 else "")
        row = (r.rank, r.worker, r.batches, len(r.samples), len(set(r.samples)), sum(r.skipped.values()))
        table.add_row(*(str(v) for v in row), shards)
    Console(file=sys.stdout, width=120).print(table)


def audit(cfg: DictConfig) -> int:
    """Runs the audit of a composed config; prints the report; returns the exit status."""
    world, steps = int(cfg.world_size), int(cfg.steps)
    if world < 1 or steps < 1:
        print(f"audit: world_size and steps must be >= 1, got {world} and {steps}", file=sys.stderr)
        return 2
    try:
        dm = hydra.utils.instantiate(cfg.data, num_workers=int(cfg.num_workers), total_steps=steps)
        if dm.hparams.source == "dense":
            raise UserError("audit: data.source=dense has no caption stream to audit")
        source = dm.build_source()
    except UserError as err:
        print(one_line(err), file=sys.stderr)
        return 2
    n_lanes, size = dm.num_lanes, dm.hparams.batch_size
    print(f"audit: {source.name}, {world} rank(s) x {n_lanes} worker(s), {steps} batches of {size} per rank")
    for line in source.plan(world, n_lanes) if hasattr(source, "plan") else []:
        print(line)
    reports, start = [], time.perf_counter()
    for rank in range(world):
        for worker in range(n_lanes):
            r = audit_slot(dm, source, rank, worker, world, steps)
            reports.append(r)
            status = f"FAILED: {r.error}" if r.error else "ok"
            print(
                f"  rank {rank} worker {worker}: {r.batches} batches, {len(r.samples)} samples, "
                f"{sum(r.skipped.values())} skipped, shards read: "
                f"{', '.join(_short(u) for u in r.shards) or '-'} [{status}] "
                f"({time.perf_counter() - start:.1f} s)",
                flush=True,
            )
    _table(reports)
    yielded = [s for r in reports for s in r.samples]
    unique = set(yielded)
    skipped = sum((r.skipped for r in reports), Counter())
    never: str = "n/a"
    if cfg.get("inventory", True) and hasattr(source, "inventory"):
        print("inventory: reading every shard once (headers only; inventory=false skips this)", flush=True)
        reached = set().union(*(r.reached for r in reports))
        never = str(
            sum(1 for s in dict.fromkeys(source.inventory(SkipCounter(max_logged=0))) if s not in reached)
        )
    per_rank = [sum(r.batches for r in reports if r.rank == rank) for rank in range(world)]
    for rank, n in enumerate(per_rank):
        print(f"rank {rank} batches {n}")
    print(f"unique samples {len(unique)}")
    print(f"duplicates {len(yielded) - len(unique)}")
    print(f"never reached {never}")
    print(f"skipped {sum(skipped.values())}")
    for reason, n in sorted(skipped.items()):
        print(f"skipped/{reason} {n}")
    failed = [r for r in reports if r.error]
    if failed or len(set(per_rank)) > 1 or per_rank[0] != steps:
        print(
            f"audit: FAILED: batches per rank {per_rank} (expected {steps} each); "
            f"{len(failed)} slot(s) failed" + (f", first: {failed[0].error}" if failed else ""),
            file=sys.stderr,
        )
        return 1
    return 0


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="audit")
def main(cfg: DictConfig) -> None:
    code = audit(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
