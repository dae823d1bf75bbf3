"""`ResumableCSVLogger`: Lightning's CSV logger made safe for runs that resume.

Lightning's writer deletes an existing metrics.csv when it starts (a second run in the same folder, or a
resumed one, loses the first one's rows) and rewrites the file in place when a new metric appears (a kill
then leaves half a file). This writer keeps existing rows and their columns, rewrites atomically, and
`CsvRowsState` records in each checkpoint how many rows were written, so a resumed run first drops the rows
logged after that checkpoint (they will be logged again) and continues the file: none lost, none doubled."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV file; ([], []) when it does not exist."""
    if not path.is_file():
        return [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write_rows(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    """Writes a whole CSV file atomically (temporary file in the same folder, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ResumableExperimentWriter(ExperimentWriter):
    """Appends to an existing metrics.csv (its header becomes the starting columns) instead of deleting it."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self.metrics_keys = read_rows(Path(self.metrics_file_path))[0]

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes metrics.csv here
        return None

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        path = Path(self.metrics_file_path)
        write_rows(path, fieldnames, read_rows(path)[1])

    def rows_written(self) -> int:
        """Flushes pending rows; the number of data rows in the file."""
        self.save()
        return len(read_rows(Path(self.metrics_file_path))[1])

    def truncate(self, n_rows: int) -> None:
        """Keeps the first `n_rows` data rows (those a checkpoint saw written) and drops pending ones."""
        self.metrics = []
        path = Path(self.metrics_file_path)
        header, rows = read_rows(path)
        if len(rows) > n_rows:
            write_rows(path, header, rows[:n_rows])


class ResumableCSVLogger(CSVLogger):
    """CSVLogger with `ResumableExperimentWriter` (same arguments and layout as Lightning's)."""

    @property
    def experiment(self) -> ResumableExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ResumableExperimentWriter(log_dir=self.log_dir)
        return self._experiment


class CsvRowsState(L.Callback):
    """Stores the CSV row count in each checkpoint and truncates the CSV to it when a run resumes."""

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._pending: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _writers(self) -> list[ResumableExperimentWriter]:
        loggers = self._trainer.loggers if self._trainer is not None else []
        return [lg.experiment for lg in loggers if isinstance(lg, ResumableCSVLogger)]

    def state_dict(self) -> dict[str, Any]:
        if self._trainer is None or not self._trainer.is_global_zero:
            return {}
        rows = [w.rows_written() for w in self._writers()]
        return {"rows": rows[0]} if rows else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rows")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._trainer = trainer
        if self._pending is not None and trainer.is_global_zero:
            for writer in self._writers():
                writer.truncate(int(self._pending))
        self._pending = None
