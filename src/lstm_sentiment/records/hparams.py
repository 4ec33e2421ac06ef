"""What TensorBoard's HPARAMS tab compares: each run's settings beside its final metrics.

Logged once, at the end of a run, so every trial of a sweep carries the same keys and the tab
lines them up (``default_hp_metric: false`` in ``conf/logger/tensorboard.yaml`` keeps Lightning
from logging a placeholder at the start). The metric columns are the ``hp/*`` scalars.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard.summary import hparams as hparams_summaries

# the settings a sweep varies or a reader compares runs by; a group name takes all its keys
HPARAM_KEYS = (
    "model",
    "data.batch_size",
    "data.max_len",
    "data.min_freq",
    "data.max_vocab_size",
    "data.tokenizer",
    "trainer.max_epochs",
    "trainer.gradient_clip_val",
    "trainer.precision",
    "seed",
)
# the HPARAMS tab's metric columns, as hp/<name>. Few on purpose: it ticks the first five metric
# tags by name (`epoch` is one), and these are the ones to compare trials by.
HPARAMS_METRICS = ("val/acc_best", "val/acc", "test/acc", "test/f1")
_ABSENT = object()


def flat_hparams(cfg: DictConfig, keys: tuple[str, ...] = HPARAM_KEYS) -> dict[str, Any]:
    """``{"model.lr": 0.003, "data.batch_size": 64, ...}``: plain bool/int/float/str values
    (None and lists as text), which is all TensorBoard's hparams plugin takes."""
    flat: dict[str, Any] = {}
    for key in keys:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if isinstance(value, DictConfig):
            flat.update(
                _flatten(OmegaConf.to_container(value, resolve=True, enum_to_str=True), key)
            )
        elif value is not _ABSENT:
            flat[key] = _plain(value)
    return flat


def _flatten(tree: dict, prefix: str) -> dict[str, Any]:
    flat = {}
    for k, v in tree.items():
        if k == "_target_":
            continue
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}.{k}"))
        else:
            flat[f"{prefix}.{k}"] = _plain(v)
    return flat


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):  # a choice (config.choice)
        return value.value
    return value if isinstance(value, bool | int | float | str) else str(value)


def final_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """``val/acc_best`` -> ``hp/val_acc_best``, for those of ``HPARAMS_METRICS`` the run has."""
    return {"hp/" + k.replace("/", "_"): float(metrics[k]) for k in HPARAMS_METRICS if k in metrics}


def log_hparams_with_metrics(
    loggers: list[Logger], cfg: DictConfig, metrics: dict[str, float]
) -> None:
    """Call once, after testing, on global rank 0."""
    hparams, final = flat_hparams(cfg), final_metrics(metrics)
    for logger in loggers:
        logger.log_hyperparams(hparams)  # hparams.yaml, CSV's too
        logger.log_metrics(final, step=0)  # the HPARAMS tab reads these scalars
        if isinstance(logger, TensorBoardLogger):
            # Lightning's log_hyperparams(params, metrics) also writes an "experiment" record,
            # and TensorBoard then takes the first run's record as the whole sweep's: columns
            # by name. Without one it builds the table from all runs, the hyperparameters that
            # differ between them first.
            _, session_start, session_end = hparams_summaries(hparams, final)
            writer = logger.experiment._get_file_writer()
            writer.add_summary(session_start)
            writer.add_summary(session_end)
        logger.finalize("success")  # flush: the run is over
