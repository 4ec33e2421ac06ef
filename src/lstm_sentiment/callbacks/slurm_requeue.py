"""Preemption and time limits on SLURM: checkpoint, requeue, resume.

SLURM warns a job with a signal (``hydra/launcher=slurm`` asks for SIGUSR1 120 s before the time
limit; ``scancel --signal=USR1 <job>`` sends it by hand). ``SlurmRequeue`` then saves
``hpc_ckpt_<n>.ckpt`` in the run folder at the next batch end, runs ``scontrol requeue`` and ends
the process without a result, so the sweep keeps waiting for the job. The requeued job runs the
same command in the same folder, where Lightning resumes from the newest ``hpc_ckpt_*`` by itself
(``ckpt_path`` null on SLURM), mid-epoch included.

Lightning's own handler for the signal (``SLURMEnvironment(auto_requeue=True)``) does the same work
inside the signal handler, interrupting whatever the process was doing, and waits on any lock the
interrupted code holds (a logger's): here it hung, no checkpoint written after 10 minutes. This
handler only sets a flag; installed before Lightning's, it keeps Lightning's from being installed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess

import lightning.pytorch as pl
from lightning.fabric.plugins.environments import SLURMEnvironment

log = logging.getLogger(__name__)


class SlurmRequeue(pl.Callback):
    def __init__(self, signal_name: str = "SIGUSR1"):
        self.signum = signal.Signals[signal_name]
        self.requested = False
        self.active = False
        self._previous = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and SLURMEnvironment.detect():
            self.requested, self.active = False, True
            self._previous = signal.signal(self.signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.requested = True

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        # every rank decides together: saving a checkpoint waits for all of them
        if not self.active or not trainer.strategy.reduce_boolean_decision(
            self.requested, all=False
        ):
            return
        path = trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            job = os.environ["SLURM_JOB_ID"]
            if os.environ.get("SLURM_ARRAY_JOB_ID"):
                job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
            log.info("%s: saved %s at step %d", self.signum.name, path, trainer.global_step)
            subprocess.run(["scontrol", "requeue", job], check=True)
            log.info("requeued SLURM job %s; it resumes from %s", job, path)
        # SystemExit, not an error: no result is written, so a sweep waits for the requeued job
        raise SystemExit(f"requeued: the job resumes from {path}")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.active:
            signal.signal(self.signum, self._previous)
            self.active = False
