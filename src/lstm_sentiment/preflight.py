"""Checks that need no data, run before any tokenizing: the accelerator asked for is there, and
every folder a run writes to can be written and has room. Each failure is a one-line
``ConfigValueError`` naming the setting to change, instead of a traceback after the first epoch.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lstm_sentiment.config import ConfigValueError

MB = 1 << 20
# Below this much free space a disk is full for any run: the cache, the logs and one checkpoint of
# even a small model need more. The checkpoints' own estimate is checked once the model is built.
MIN_FREE_BYTES = 64 * MB


def check_accelerator(trainer: DictConfig) -> None:
    """``trainer.accelerator=gpu`` (or ``cuda``) on a machine where torch sees no such GPU."""
    accelerator = str(trainer.get("accelerator", "cpu"))
    if accelerator not in ("gpu", "cuda"):
        return
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not available:
        raise ConfigValueError(
            f"trainer.accelerator={accelerator}, but torch sees no CUDA GPU here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}): "
            "train on the CPU with trainer=cpu"
        )
    devices = trainer.get("devices", 1)
    if isinstance(devices, int) and devices > available:
        raise ConfigValueError(
            f"trainer.devices={devices}, but torch sees {available} GPU(s): "
            f"set trainer.devices={available} (or auto)"
        )


def output_folders(cfg: DictConfig) -> dict[str, Path]:
    """Setting -> folder, for every folder a training run writes to."""
    folders = {"hydra.run.dir (paths.output_dir)": cfg.paths.output_dir}
    if OmegaConf.select(cfg, "data.cache_dir"):
        folders["paths.cache_dir"] = cfg.data.cache_dir
    for name, callback in (cfg.get("callbacks") or {}).items():
        if callback and callback.get("dirpath"):
            folders[f"callbacks.{name}.dirpath"] = callback.dirpath
    return {setting: Path(folder) for setting, folder in folders.items()}


def check_writable(folder: Path, setting: str) -> None:
    """Create ``folder`` and a file in it; enough free space for any run."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"probe")
            probe.flush()
    except OSError as e:
        raise ConfigValueError(
            f"cannot write to {folder} ({e.strerror}): choose another folder with {setting}"
        ) from None
    check_free_space(folder, MIN_FREE_BYTES, setting)


def check_free_space(folder: Path, needed: int, setting: str, what: str = "a run needs") -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise ConfigValueError(
            f"{folder} has {free / MB:,.0f} MB free; {what} about {needed / MB:,.0f} MB: free "
            f"space on its disk, or choose a folder on another disk with {setting}"
        )


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """About what the checkpoints of a run take at once: the best and the last, each holding the
    weights and Adam's two moments, and one more while a new one is written beside the old."""
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    return 3 * 3 * parameters
