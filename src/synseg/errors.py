"""The errors a user can cause (bad config, bad data, bad files). The entry points print them as one line
naming the file or field and what was expected, with no traceback, and exit with status 2 (1 for a run that
started and had to stop). Anything else is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """A bad input or configuration; its message is one line meant for the user."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A config value out of range or of the wrong kind (names the key and what is expected)."""


class DataStreamError(UserError, RuntimeError):
    """A training stream that cannot go on (no usable sample for too long, no shard for a worker): names the
    source and the skip counts. Stops a started run: exit status 1."""

    exit_code = 1


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be loaded or resumed from (missing, unreadable, unsafe, another model)."""


class RunFolderError(UserError):
    """A run folder that already exists (or is missing for a resume)."""


class NonFiniteError(UserError, FloatingPointError):
    """Training produced non-finite losses or gradients for too many consecutive steps."""

    exit_code = 1


def one_line(err: BaseException) -> str:
    """The user-facing line of an error: its last non-empty line (errors re-raised from DataLoader workers
    carry the worker's traceback before the original message)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    cls = type(err)
    for prefix in (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: "):
        if len(lines) > 1 and lines[-1].startswith(prefix):  # "pkg.Error: message" of a worker traceback
            return lines[-1][len(prefix) :]
    return lines[-1]


class DataFileError(UserError, ValueError):
    """An evaluation file that does not fit its dataset (mask size, label values, layout): names the file."""
