"""Evaluate a checkpoint on the test split: ``python -m lstm_sentiment.eval ckpt_path=PATH``.

The test reviews are encoded with the checkpoint's own text settings (tokenizer, cleaning,
``max_len``): ``data.*`` values that differ are replaced, with a warning naming each, so eval
gives the metrics the training run measured. A vocabulary that differs (other review files,
``data.min_freq`` or ``data.max_vocab_size``) is refused.
"""

from __future__ import annotations

import logging

import hydra
import lightning.pytorch as pl
from omegaconf import DictConfig

from lstm_sentiment.config import (
    CONFIG_DIR,
    ConfigValueError,
    build,
    check_ranges,
    instantiate_all,
    make,
)
from lstm_sentiment.data.encoder import TextEncoder
from lstm_sentiment.errors import user_errors_exit
from lstm_sentiment.inference import checkpoint_path, load_checkpoint
from lstm_sentiment.models.sentiment_module import SentimentModule
from lstm_sentiment.preflight import check_accelerator, check_writable, output_folders
from lstm_sentiment.records.run_folder import log_run_start
from lstm_sentiment.records.trials import write_job_result

log = logging.getLogger(__name__)


def use_checkpoint_text_settings(cfg: DictConfig, saved: TextEncoder) -> None:
    """Set ``cfg.data``'s text settings to the checkpoint's, warning about each that differed."""
    for key, value in saved.settings().items():
        if cfg.data[key] != value:
            log.warning(
                "data.%s=%s differs from the checkpoint's: evaluating with its %s",
                key, cfg.data[key], value,
            )  # fmt: skip
            cfg.data[key] = value


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test ``cfg.ckpt_path`` on the test split; the metrics go to the log and to
    ``metrics.json`` in the run folder."""
    check_ranges(cfg)
    # the checkpoint checked whole (archive CRCs, no pickled code, a network that fits its
    # weights) before any data is read
    _, saved, _ = load_checkpoint(checkpoint_path(cfg))
    check_accelerator(cfg.trainer)
    for setting, folder in output_folders(cfg).items():
        check_writable(folder, setting)
    log_run_start(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    use_checkpoint_text_settings(cfg, saved)
    datamodule = build(cfg.data)
    datamodule.prepare_data()
    datamodule.log_data_used()
    datamodule.setup("test")
    if datamodule.vocab.itos != saved.vocab.itos:
        raise ConfigValueError(
            f"{cfg.ckpt_path} was trained with another vocabulary than data.* builds now "
            "(other review files, data.min_freq or data.max_vocab_size?): use the data settings "
            "of its training run (see its .hydra/config.yaml)"
        )
    model = SentimentModule.load_from_checkpoint(cfg.ckpt_path, map_location="cpu")
    trainer = make(cfg.trainer, logger=instantiate_all(cfg.get("logger")) or False)
    trainer.test(model, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    path = write_job_result(cfg.paths.output_dir, metrics)
    log.info("metrics, in %s: %s", path, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    logging.captureWarnings(True)  # warnings go to the log, so eval.log holds them too
    with user_errors_exit():
        evaluate(cfg)


if __name__ == "__main__":
    main()
