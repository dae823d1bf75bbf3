"""SLURM as Lightning runs it: `srun` starts one process per GPU; on `--signal=SIGUSR1@90` (pre-emption or the
time limit) Lightning saves `hpc_ckpt_<n>.ckpt` in the run folder and requeues the job, whose new start
resumes from it (`resume=auto`, see synseg.run_folder)."""

from __future__ import annotations

import signal

from lightning.fabric.plugins.environments import SLURMEnvironment


def slurm_environment(auto_requeue: bool = True, requeue_signal: str = "SIGUSR1") -> SLURMEnvironment:
    """Lightning's SLURM cluster environment with auto-requeue on `requeue_signal` (a signal name)."""
    try:
        sig = signal.Signals[requeue_signal]
    except KeyError:
        raise ValueError(f"trainer.plugins: requeue_signal {requeue_signal!r} is not a signal name") from None
    return SLURMEnvironment(auto_requeue=auto_requeue, requeue_signal=sig)
