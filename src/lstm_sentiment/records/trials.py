"""One sweep trial: the result file it leaves in its output folder, and the one-process rule."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

from lstm_sentiment.config import ConfigValueError

RESULT_FILE = "metrics.json"


def write_job_result(
    output_dir: str | Path, metrics: dict[str, float] | None = None, error: str | None = None
) -> Path:
    """``{"status": "ok" | "failed", "error": ..., "metrics": {...}}`` in ``output_dir``.

    Written to a temporary file and renamed, so a summary read at any moment sees a whole file.
    """
    record = {
        "status": "failed" if error else "ok",
        "error": error,
        "metrics": {k: float(v) for k, v in (metrics or {}).items() if _is_number(v)},
    }
    path = Path(output_dir) / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RESULT_FILE}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_job_result(output_dir: str | Path) -> dict[str, Any]:
    """The record ``write_job_result`` left, or a failed one when the job died before writing."""
    path = Path(output_dir) / RESULT_FILE
    if not path.is_file():
        return {"status": "failed", "error": f"no {RESULT_FILE}: the job died", "metrics": {}}
    return json.loads(path.read_text())


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def check_one_process_per_trial(trainer: pl.Trainer) -> None:
    """Sweeps run one process per trial: refuse strategies that re-run the script per device.

    ``strategy=ddp`` (and ``devices>1`` with ``strategy=auto``) starts each extra rank by
    re-running this command line: inside a sweep that command holds ``-m`` and the search space,
    so each rank would start a sweep of its own. ``ddp_spawn`` (``trainer=ddp_sim``) forks workers
    from this process instead and is fine in a sweep, and so is a job whose ranks a cluster
    started (SLURM's tasks, torchrun's workers): then the launcher starts nothing.
    """
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    launcher = trainer.strategy.launcher
    if (
        in_sweep
        and isinstance(launcher, _SubprocessScriptLauncher)
        and not launcher.cluster_environment.creates_processes_externally
    ):
        raise ConfigValueError(
            f"strategy {type(trainer.strategy).__name__} re-runs the command for each device, "
            "which a sweep cannot do: sweep on one device (trainer=gpu) or with "
            "trainer.strategy=ddp_spawn, and train the winner with trainer=ddp as a single run"
        )
