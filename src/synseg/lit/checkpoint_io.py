"""`AtomicCheckpointIO`: Lightning's checkpoint plugin with our file rules (see `synseg.checkpoint_files`):
atomic writes (a kill during a save leaves the previous checkpoint loadable), plain containers only, and
weights-only loading with a one-line refusal of anything else."""

from __future__ import annotations

from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from synseg.checkpoint_files import atomic_torch_save, load_checkpoint_file, plain_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Every checkpoint Lightning writes or reads (last.ckpt, step checkpoints, resume) goes through here."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        atomic_torch_save(plain_checkpoint(checkpoint), path)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> Any:
        return load_checkpoint_file(path, map_location if map_location is not None else "cpu", "ckpt_path")
