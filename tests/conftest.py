"""Shared fixtures: tiny review files, composed and shrunk configs, a trained tiny model (the
plain helpers they use are in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from helpers import compose_config, torch_threads, write_fasttext


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """train.ft.txt (600 reviews) and test.ft.txt (200) of synthetic reviews."""
    folder = tmp_path_factory.mktemp("reviews")
    write_fasttext(folder / "train.ft.txt", 600, seed=1)
    write_fasttext(folder / "test.ft.txt", 200, seed=2)
    return folder


@pytest.fixture
def train_cfg(tmp_path, tiny_data_dir):
    def make(*overrides: str) -> DictConfig:
        return compose_config("train", tmp_path, tiny_data_dir, list(overrides))

    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from more threads, and on a busy shared CPU several threads spin
    against each other: one thread took test_predict/export/embeddings from ~3 min to ~35 s."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_data_dir) -> Path:
    """The best checkpoint of a model trained by the real ``train()`` on the tiny reviews (a few
    seconds), shared by the tests that use a trained model (predict, export)."""
    from lstm_sentiment.train import train

    tmp = tmp_path_factory.mktemp("tiny_model")
    overrides = [
        "~logger",
        "callbacks.early_stopping=null",
        "callbacks.lr_monitor=null",
        "test=false",
        "model.net.bidirectional=false",  # the prefix reading of the per-token view needs a
        "model.net.pooling=last",  # left-to-right network read at its last state
    ]
    with torch_threads(1):
        _, trainer = train(compose_config("train", tmp, tiny_data_dir, overrides))
    return Path(trainer.checkpoint_callback.best_model_path)
