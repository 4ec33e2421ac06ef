"""Evaluate a checkpoint on the test split: ``python -m lstm_sentiment.eval ckpt_path=PATH``."""

from __future__ import annotations

import logging

import hydra
import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from lstm_sentiment.config import CONFIG_DIR, check_ranges
from lstm_sentiment.models.sentiment_module import SentimentModule
from lstm_sentiment.train import exit_on_user_error, instantiate_all

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    check_ranges(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    log.info("review files: %s and %s", *datamodule.review_files())
    datamodule.prepare_data()
    datamodule.setup("test")
    checkpoint = torch.load(cfg.ckpt_path, map_location="cpu", weights_only=True)
    saved = checkpoint.get(type(datamodule).__qualname__, {})
    if saved.get("vocab") and saved["vocab"] != datamodule.vocab.itos:
        raise ValueError(
            f"{cfg.ckpt_path} was trained with another vocabulary than data.* builds now: "
            "use the data settings of its training run (see its .hydra/config.yaml)"
        )
    model = SentimentModule.load_from_checkpoint(cfg.ckpt_path, map_location="cpu")
    trainer = instantiate(cfg.trainer, logger=instantiate_all(cfg.get("logger")) or False)
    trainer.test(model, datamodule=datamodule)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except Exception as e:
        exit_on_user_error(e)
        raise


if __name__ == "__main__":
    main()
