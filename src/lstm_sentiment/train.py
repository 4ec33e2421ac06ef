"""Train, then test the best checkpoint: ``python -m lstm_sentiment.train [overrides]``.

Resume a run from its folder: ``hydra.run.dir=<run> ckpt_path=last`` (records/run_folder.py).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lstm_sentiment.callbacks.checkpointed_metrics import CheckpointedMetrics
from lstm_sentiment.config import (
    CONFIG_DIR,
    ConfigValueError,
    build,
    check_ranges,
    instantiate_all,
    make,
    plain,
)
from lstm_sentiment.data.datamodule import ReviewDataModule
from lstm_sentiment.data.encoder import TextEncoder
from lstm_sentiment.data.vectors import load_vectors
from lstm_sentiment.data.vocab import Vocabulary
from lstm_sentiment.errors import exit_on_user_error
from lstm_sentiment.gpu_slots import gpu_slot
from lstm_sentiment.inference import DATAMODULE_KEY, check_resume_checkpoint, load_checkpoint
from lstm_sentiment.preflight import (
    check_accelerator,
    check_free_space,
    check_writable,
    checkpoint_bytes,
    output_folders,
)
from lstm_sentiment.records.hparams import log_hparams_with_metrics
from lstm_sentiment.records.run_folder import (
    checkpoint_to_resume,
    later_process_record,
    log_run_start,
    nothing_left_to_train,
    result_folder,
    resumed_config,
    run_finished,
)
from lstm_sentiment.records.trials import (
    RESULT_FILE,
    check_one_process_per_trial,
    read_job_result,
    write_job_result,
)

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> tuple[dict[str, float], pl.Trainer | None]:
    """Fit ``cfg.model`` on ``cfg.data``, then test the best checkpoint; return all metrics.

    With ``ckpt_path`` the run goes on from that checkpoint, with the settings it was trained with
    (records/run_folder.py); a run with nothing left to train says so and keeps its results (the
    trainer returned is then None when the run had finished).
    """
    check_ranges(cfg)
    ckpt = checkpoint_to_resume(cfg)
    if ckpt is not None:
        # checked whole (archive CRCs, no pickled code) before anything else reads it, and
        # its weights against the run's network, before any data is read
        loaded = load_checkpoint(ckpt)
        cfg = resumed_config(cfg, ckpt)
        check_ranges(cfg)
        check_resume_checkpoint(ckpt, loaded, plain(cfg.model.net))
    elif later_process_record() is not None:
        raise ConfigValueError(
            f"{cfg.paths.output_dir} holds a run already: resume it with ckpt_path=last, or "
            "leave hydra.run.dir out to start a new run in a new folder"
        )
    # the checks that need no data, before any tokenizing
    check_accelerator(cfg.trainer)
    for setting, folder in output_folders(cfg).items():
        check_writable(folder, setting)
    log_run_start(cfg)
    finished = nothing_left_to_train(cfg, ckpt) if ckpt is not None else None
    if finished:
        log.warning("nothing left to train: %s; raise trainer.max_epochs to train on", finished)
        run = ckpt.resolve().parent.parent
        if run_finished(run):
            log.info("the run's results stay as they were: %s", run / RESULT_FILE)
            return read_job_result(run)["metrics"], None

    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule = build(cfg.data)  # a tokenizer without its NLTK data fails here
    loggers = instantiate_all(cfg.get("logger"))
    carried = CheckpointedMetrics()
    trainer = make(
        cfg.trainer,
        callbacks=[*instantiate_all(cfg.get("callbacks")), carried],
        logger=loggers or False,
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

    # tokenize + cache now: the model's embedding table needs the vocabulary's size
    datamodule.prepare_data()
    datamodule.log_data_used()
    datamodule.check_trainable()
    model = build(cfg.model, vocab_size=datamodule.vocab_size)
    if ckpt is not None:
        check_same_vocabulary(datamodule, ckpt)
    load_pretrained_vectors(model, datamodule.vocab)
    output_dir = Path(cfg.paths.output_dir)
    needed = checkpoint_bytes(model)
    check_free_space(output_dir, needed, "hydra.run.dir", "this model's checkpoints take")

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        # from a checkpoint with nothing left to train, this only restores the callbacks' state
        # (the best checkpoint, the metrics so far) for the test below
        log.info("training starts: %d-word vocabulary", datamodule.vocab_size)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
        metrics = {**carried.restored, **{k: float(v) for k, v in trainer.callback_metrics.items()}}

    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("no best checkpoint (no checkpoint callback?): testing the last weights")
        log.info("testing %s", best or "the last weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        log.info("best checkpoint: %s", best)
    if trainer.is_global_zero:
        # TensorBoard's HPARAMS tab and the sweep summary read these
        log_hparams_with_metrics(loggers, cfg, metrics)
        path = write_job_result(result_folder(output_dir), metrics)
        log.info("metrics, in %s: %s", path, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return metrics, trainer


def check_same_vocabulary(datamodule: ReviewDataModule, ckpt: Path) -> None:
    """A resume must read the data its checkpoint was trained on: the same vocabulary."""
    saved = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    if TextEncoder.from_dict(saved[DATAMODULE_KEY]).vocab.itos != datamodule.vocab.itos:
        raise ConfigValueError(
            f"the data builds another vocabulary than {ckpt} was trained with (data folder "
            f"{datamodule.data_dir}): resume with the review files of its training run "
            "(paths.data_dir=..., see the data folder in its train.log)"
        )


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


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_library_noise() -> None:
    """Lines that say nothing about the run: Lightning's advert for its cloud logger and a
    deprecation inside Lightning itself (lightning 2.6 calling torch 2.13's pytree)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    logging.captureWarnings(True)  # warnings go to the log, so train.log holds them too
    quiet_library_noise()
    try:
        with gpu_slot(cfg):  # a local parallel sweep's trial on a GPU of its own
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
