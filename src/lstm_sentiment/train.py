"""Train, then test the best checkpoint: ``python -m lstm_sentiment.train [overrides]``."""

from __future__ import annotations

import logging
import sys

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from lstm_sentiment.callbacks.hparams import log_hparams_with_metrics
from lstm_sentiment.callbacks.trials import check_one_process_per_trial, write_job_result
from lstm_sentiment.config import CONFIG_DIR, ConfigValueError, check_ranges
from lstm_sentiment.data.reviews import ReviewFileError
from lstm_sentiment.models.components.embeddings import EmbeddingsError, init_embeddings

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list:
    """Each entry of a config group like ``callbacks`` or ``logger`` that names a ``_target_``."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def train(cfg: DictConfig) -> tuple[dict[str, float], pl.Trainer]:
    """Fit ``cfg.model`` on ``cfg.data``, then test the best checkpoint; return all metrics."""
    check_ranges(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    # tokenize + cache now: the model's embedding table needs the vocabulary's size
    datamodule.prepare_data()
    model = instantiate(cfg.model, vocab_size=datamodule.vocab_size)
    init_embeddings(model, datamodule.vocab)  # pretrained vectors, if model.embeddings.path is set
    loggers = instantiate_all(cfg.get("logger"))
    trainer = instantiate(
        cfg.trainer, callbacks=instantiate_all(cfg.get("callbacks")), logger=loggers or False
    )
    check_one_process_per_trial(trainer)
    log.info(
        "process %d of %d (node %d, local rank %d), %d torch threads",
        trainer.global_rank,
        trainer.world_size,
        trainer.node_rank,
        trainer.local_rank,
        torch.get_num_threads(),
    )

    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("no best checkpoint (no checkpoint callback?): testing the last weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        log.info("best checkpoint: %s", best)
    if trainer.is_global_zero:
        # TensorBoard's HPARAMS tab and the sweep summary read these
        log_hparams_with_metrics(loggers, cfg, metrics)
        write_job_result(cfg.paths.output_dir, metrics)
    return metrics, trainer


# Errors whose message says what to fix: shown as one line, since a traceback would bury it.
USER_ERRORS = (ReviewFileError, ConfigValueError, FloatingPointError, LookupError, EmbeddingsError)


def exit_on_user_error(error: BaseException) -> None:
    if isinstance(error, USER_ERRORS):
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def optimized_value(metrics: dict[str, float], name: str | None) -> float | None:
    if not name:
        return None
    if name not in metrics:
        raise KeyError(
            f"optimized_metric {name!r} was not logged; logged metrics: {sorted(metrics)}"
        )
    return metrics[name]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics, _ = train(cfg)
    except Exception as e:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            exit_on_user_error(e)
            raise
        # A sweep goes on past a failed trial (out of memory, NaN loss). It returns no value, not
        # NaN: hydra-optuna-sweeper 1.3.0 aborts the whole study on a NaN (hydra issue 2237) but
        # records a non-number as a FAILED trial; the grid sweeper only needs no exception.
        log.exception("trial failed; the sweep continues")
        write_job_result(cfg.paths.output_dir, error=f"{type(e).__name__}: {e}")
        return None
    return optimized_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
