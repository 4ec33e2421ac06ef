"""A run folder's record, and resuming a run from its folder alone.

The first process in a run folder writes the record: ``.hydra/`` (the composed config, Hydra's
settings, the overrides typed), ``metrics.json`` and ``train.log``. A later process in the same
folder (the README's resume command, ``hydra.run.dir=<run> ckpt_path=last``) never rewrites it:
its own record goes to ``resumes/<n>/`` (``KeepRunRecords`` sets that before Hydra writes
anything), ``metrics.json`` is written only by the process that first has results, and
``train.log`` is appended to.

A resume runs with the settings the run was trained with (``.hydra/config.yaml`` of the
checkpoint's run folder): the command line may change only what leaves the model and its data
alone (``RESUME_MAY_CHANGE``: more epochs, other devices, progress output); any other setting
that differs is refused, naming it.
"""

from __future__ import annotations

import itertools
import logging
import os
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from lstm_sentiment.config import ConfigValueError
from lstm_sentiment.inference import CheckpointError
from lstm_sentiment.records.trials import RESULT_FILE, read_job_result

log = logging.getLogger(__name__)

RECORD = ".hydra"
RESUMES = "resumes"

# The settings a resume may change (a key, or a prefix of keys). Everything else shapes the model,
# its data or its optimization, and stays as the run was trained.
RESUME_MAY_CHANGE = (
    "ckpt_path",
    "train",
    "test",
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.strategy",
    "trainer.num_nodes",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "callbacks.rich_progress_bar",
    "callbacks.time_estimate",
    "callbacks.early_stopping",
    "data.progress",
    "data.num_workers",
    "data.preprocess_workers",
    "paths",
)


class KeepRunRecords(Callback):
    """Hydra callback (conf/hydra/default.yaml): a process started in a run folder that already
    holds a record writes its own to ``resumes/<n>/.hydra``, so the first one's stays as it was.

    ``hydra.output_subdir=null`` (what Lightning gives the extra ranks of a ``trainer=ddp`` run)
    means no record at all, and stays so. The other ranks of a run started by an outside
    launcher (torchrun on each node, ``srun`` with several tasks) write none either: they start
    beside rank 0, not after it, and the run's record is rank 0's.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.output_subdir is None:
            return
        if launcher_rank() != 0:
            with read_write(config.hydra):
                config.hydra.output_subdir = None
            return
        run = Path(config.hydra.run.dir)
        if not (run / RECORD / "config.yaml").is_file():
            return
        n = next(i for i in itertools.count(1) if not (run / RESUMES / str(i)).exists())
        with read_write(config.hydra):
            config.hydra.output_subdir = f"{RESUMES}/{n}/{RECORD}"


def launcher_rank() -> int:
    """This process's global rank as torchrun (``RANK``) or SLURM (``SLURM_PROCID``) set it;
    0 when neither did."""
    return int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0)


def log_run_start(cfg: DictConfig) -> None:
    """The run folder and the composed config, first thing in the log (and <task>.log)."""
    log.info("run folder: %s", Path(cfg.paths.output_dir).resolve())
    task = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])  # tests keep it
    log.info("config:\n%s", OmegaConf.to_yaml(task, resolve=True).rstrip())


def later_process_record() -> Path | None:
    """This process's record folder (``<run>/resumes/<n>``) when an earlier process made the run
    folder; None for the first process, a DDP helper rank, or a config composed without Hydra."""
    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    subdir = hydra.output_subdir
    if not subdir or Path(subdir).parts[0] != RESUMES:
        return None
    return Path(hydra.runtime.output_dir) / Path(subdir).parent


def last_checkpoint(cfg: DictConfig) -> Path:
    """``ckpt_path=last``: this run folder's ``last.ckpt`` (``callbacks.last_checkpoint``)."""
    saver = OmegaConf.select(cfg, "callbacks.last_checkpoint")
    if not saver:
        raise ConfigValueError("ckpt_path=last needs callbacks.last_checkpoint (callbacks=default)")
    path = Path(saver.dirpath) / f"{saver.filename}.ckpt"
    if not path.is_file():
        raise ConfigValueError(
            f"ckpt_path=last: no {path}. Resume a run in its own folder: "
            "hydra.run.dir=logs/train/runs/<time> ckpt_path=last (or ckpt_path=<a .ckpt file>)"
        )
    return path


def _value(cfg: DictConfig, key: str) -> Any:
    """A setting as plain values (choices are Enums in a composed config, strings when saved)."""
    node = OmegaConf.select(cfg, key, default=None)
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return str(node) if isinstance(node, Enum) else node


def _may_change(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUME_MAY_CHANGE)


def resumed_config(cfg: DictConfig, ckpt: Path) -> DictConfig:
    """The config the run of checkpoint ``ckpt`` was trained with, with this command's overrides
    of ``RESUME_MAY_CHANGE`` keys; another override that changes a setting is refused. ``cfg``
    itself when the checkpoint's folder holds no saved config (a checkpoint from elsewhere)."""
    run = ckpt.resolve().parent.parent  # <run>/checkpoints/<name>.ckpt
    saved_path = run / RECORD / "config.yaml"
    if not saved_path.is_file():
        log.warning("no %s: resuming %s with this command's settings", saved_path, ckpt)
        return cfg
    saved = OmegaConf.load(saved_path)
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    overrides = list(hydra.overrides.task) if hydra else []
    groups = dict(hydra.runtime.choices) if hydra else {}
    saved_groups = {}
    if (run / RECORD / "hydra.yaml").is_file():
        saved_groups = dict(OmegaConf.load(run / RECORD / "hydra.yaml").hydra.runtime.choices)
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key in groups:  # a config group: data=..., model=..., experiment=...
            if groups[key] != saved_groups.get(key, groups[key]):
                raise _refused(run, key, groups[key], saved_groups.get(key))
            continue
        if _may_change(key):
            with open_dict(saved):
                if override.is_delete():
                    OmegaConf.update(saved, key, None, force_add=True)
                else:
                    OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
        elif _value(cfg, key) != _value(saved, key):
            raise _refused(run, key, _value(cfg, key), _value(saved, key))
    OmegaConf.set_struct(saved, True)
    log.info("resuming with the settings of %s", saved_path)
    record = later_process_record()
    if record is not None:  # this process's own record: the settings it runs with
        write_atomically(record / RECORD / "config.yaml", OmegaConf.to_yaml(saved))
    return saved


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _refused(run: Path, key: str, value: Any, saved: Any) -> ConfigValueError:
    return ConfigValueError(
        f"{key}={value} differs from the {saved} that {run} was trained with "
        f"({run / RECORD}/): a resume keeps the run's settings, except more epochs, other "
        "devices and output ones (README, Resume). Drop it, or start a new run (no hydra.run.dir)"
    )


def checkpoint_to_resume(cfg: DictConfig) -> Path | None:
    """``ckpt_path`` as a file (``last``: this run folder's last.ckpt), or None."""
    ckpt = cfg.get("ckpt_path")
    if not ckpt:
        return None
    path = last_checkpoint(cfg) if ckpt == "last" else Path(ckpt)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def progress(ckpt: Path) -> tuple[int, int]:
    """The trained epochs and the optimizer steps a checkpoint holds (read memory-mapped)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    epochs = state["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]
    return int(epochs), int(state["global_step"])


def run_finished(run: Path) -> bool:
    """The run wrote its results (``metrics.json``, status ok)."""
    return (run / RESULT_FILE).is_file() and read_job_result(run)["status"] == "ok"


def nothing_left_to_train(cfg: DictConfig, ckpt: Path) -> str | None:
    """Why resuming ``ckpt`` would train nothing, or None: its epochs reach
    ``trainer.max_epochs``, or its run finished (early stopping, say) and this command did not
    raise ``trainer.max_epochs``."""
    epochs, _ = progress(ckpt)
    budget = cfg.trainer.get("max_epochs")
    if budget is not None and budget != -1 and epochs >= budget:
        return f"{ckpt} holds {epochs} trained epochs of trainer.max_epochs={budget}"
    run = ckpt.resolve().parent.parent
    saved = run / RECORD / "config.yaml"
    if not (saved.is_file() and run_finished(run)):
        return None
    if budget == OmegaConf.load(saved).trainer.max_epochs:
        return f"{run} finished after {epochs} epochs ({run / RESULT_FILE})"
    return None


def result_folder(output_dir: str | Path) -> Path:
    """Where this process writes ``metrics.json``: the run folder, unless an earlier process
    wrote one there already; then this process's own ``resumes/<n>/``."""
    output_dir = Path(output_dir)
    later = later_process_record()
    if later is not None and (output_dir / RESULT_FILE).exists():
        return later
    return output_dir
