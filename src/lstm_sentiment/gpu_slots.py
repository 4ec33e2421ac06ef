"""One GPU per concurrent trial of a local parallel sweep (``hydra/launcher=local_parallel``).

The joblib launcher runs ``n_jobs`` trials at once in worker processes on one machine; each would
train on GPU 0. A trial that asks for one GPU (``trainer.accelerator=gpu``, ``trainer.devices=1``)
takes instead the first GPU no other trial holds: one lock file per GPU in the machine's temp
folder, held until the trial ends (or its process dies: the operating system drops the lock),
and trains with ``trainer.devices=[<that GPU>]``. With more trials at once than GPUs, a trial
waits for one to free up, and says so. Any other run (one training, SLURM jobs, which SLURM gives
GPUs to, a trial on the CPU or on several GPUs) is left as it is.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

LOCK_DIR = Path(tempfile.gettempdir()) / "lstm_sentiment-gpus"
WAIT_SECONDS = 1.0  # between tries when every GPU is taken


def under_local_parallel() -> bool:
    """This process runs a trial of a sweep started with ``hydra/launcher=local_parallel``."""
    if not HydraConfig.initialized():
        return False
    target = OmegaConf.select(HydraConfig.get(), "launcher._target_", default="") or ""
    return target.endswith("JoblibLauncher")


def wants_one_gpu(cfg: DictConfig) -> bool:
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default=""))
    return accelerator in ("gpu", "cuda") and OmegaConf.select(cfg, "trainer.devices") == 1


@contextmanager
def gpu_slot(cfg: DictConfig, gpus: int | None = None) -> Iterator[int | None]:
    """Hold a free GPU for this trial (set ``cfg.trainer.devices`` to it) while the block runs;
    yields its index, or None when the run is not a one-GPU trial of a local parallel sweep."""
    gpus = torch.cuda.device_count() if gpus is None else gpus
    if not (under_local_parallel() and wants_one_gpu(cfg) and gpus > 1):
        yield None
        return
    LOCK_DIR.mkdir(exist_ok=True)
    locks = [FileLock(LOCK_DIR / f"gpu{i}.lock") for i in range(gpus)]
    said = False
    while True:
        for index, lock in enumerate(locks):
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                with open_dict(cfg):
                    cfg.trainer.devices = [index]
                log.info("this trial trains on GPU %d (%d GPUs, one trial each)", index, gpus)
                yield index
            finally:
                lock.release()
            return
        if not said:
            log.info("all %d GPUs hold a trial: waiting for one to finish", gpus)
            said = True
        time.sleep(WAIT_SECONDS)
