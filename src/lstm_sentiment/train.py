"""Train, then test the best checkpoint: ``python -m lstm_sentiment.train [overrides]``."""

from __future__ import annotations

import logging
import math

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lstm_sentiment.config import CONFIG_DIR

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list:
    """Each entry of a config group like ``callbacks`` or ``logger`` that names a ``_target_``."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def train(cfg: DictConfig) -> tuple[dict[str, float], pl.Trainer]:
    """Fit ``cfg.model`` on ``cfg.data``, then test the best checkpoint; return all metrics."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    # tokenize + cache now: the model's embedding table needs the vocabulary's size
    datamodule.prepare_data()
    model = instantiate(cfg.model, vocab_size=datamodule.vocab_size)
    loggers = instantiate_all(cfg.get("logger"))
    trainer = instantiate(
        cfg.trainer, callbacks=instantiate_all(cfg.get("callbacks")), logger=loggers or False
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("no best checkpoint (no checkpoint callback?): testing the last weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        metrics_best = {"best_model_path": best}
        log.info("best checkpoint: %s", metrics_best["best_model_path"])
    return metrics, trainer


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
    except Exception:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        # A sweep goes on past a failed trial (out of memory, NaN loss): the sweeper records a
        # NaN result as a failed trial.
        log.exception("trial failed; the sweep continues")
        return math.nan
    return optimized_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
