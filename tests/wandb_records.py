"""Reads an offline wandb run file (`run-<id>.wandb`) so tests can check what a run logged: wandb writes a
LevelDB-style record log (7-byte file header, 32 KiB blocks, 7-byte chunk headers) of `Record` protobufs."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7  # crc32 (4), length (2), chunk type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list[Any]:
    """Every Record of a run file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a wandb run file")
    pos, records, pending = 7, [], b""
    while pos + HEADER <= len(data):
        block_left = BLOCK - pos % BLOCK
        if block_left < HEADER:  # the tail of a block too small for a header is padding
            pos += block_left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:  # zero padding
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def run_summary(path: str | Path) -> dict[str, Any]:
    """What tests read of a run: job_type, tags, group, the history keys, artifacts and tables logged."""
    import json

    out: dict[str, Any] = {"history_keys": set(), "artifacts": [], "tables": [], "images": []}
    for rec in read_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(job_type=rec.run.job_type, tags=list(rec.run.tags), group=rec.run.run_group)
        elif kind == "history":
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                out["history_keys"].add(key)
                if not key.endswith("/_type"):
                    continue
                value = json.loads(item.value_json) if item.value_json else None
                if value == "table-file":
                    out["tables"].append(key[: -len("/_type")])
                elif value in ("image-file", "images/separated"):
                    out["images"].append(key[: -len("/_type")])
        elif kind == "artifact":
            out["artifacts"].append((rec.artifact.name, rec.artifact.type))
    return out
