"""Train, then test the best checkpoint: ``python -m lstm_sentiment.train [overrides]``."""

from __future__ import annotations

import logging

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lstm_sentiment.config import (
    CONFIG_DIR,
    ConfigValueError,
    build,
    check_ranges,
    instantiate_all,
    make,
)
from lstm_sentiment.data.vectors import load_vectors
from lstm_sentiment.data.vocab import Vocabulary
from lstm_sentiment.errors import UserError, exit_on_user_error
from lstm_sentiment.records.hparams import log_hparams_with_metrics
from lstm_sentiment.records.trials import check_one_process_per_trial, write_job_result

log = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite (SentimentModule raises FloatingPointError naming the
    step): the learning rate or clipping must change."""


def train(cfg: DictConfig) -> tuple[dict[str, float], pl.Trainer]:
    """Fit ``cfg.model`` on ``cfg.data``, then test the best checkpoint; return all metrics."""
    check_ranges(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule = build(cfg.data)
    log.info("review files: %s and %s", *datamodule.review_files())
    # tokenize + cache now: the model's embedding table needs the vocabulary's size
    datamodule.prepare_data()
    model = build(cfg.model, vocab_size=datamodule.vocab_size)
    load_pretrained_vectors(model, datamodule.vocab)
    loggers = instantiate_all(cfg.get("logger"))
    trainer = make(
        cfg.trainer, callbacks=instantiate_all(cfg.get("callbacks")), logger=loggers or False
    )
    check_one_process_per_trial(trainer)

    if cfg.get("train", True):
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        except FloatingPointError as e:  # SentimentModule's check of the loss
            raise TrainingDiverged(str(e)) from None
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


def load_pretrained_vectors(model: pl.LightningModule, vocab: Vocabulary) -> None:
    """``model.embeddings.path``: copy its vectors into the embedding rows of known words.

    Only the rows are filled (a checkpoint then carries them); freezing follows the hparam in the
    module itself, so a reloaded checkpoint stays frozen.
    """
    path = (model.hparams.get("embeddings") or {}).get("path")
    if path:
        found = load_vectors(model.net.embedding, vocab, path)
        log.info("%d of %d vocabulary words found in %s", found, len(vocab), path)


def optimized_value(metrics: dict[str, float], name: str | None) -> float | None:
    if not name:
        return None
    if name not in metrics:
        raise ConfigValueError(
            f"optimized_metric={name} was not logged; logged metrics: {', '.join(sorted(metrics))}"
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
