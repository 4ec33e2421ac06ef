"""Shared fixtures: tiny review files written by the tests, and composed, shrunken configs."""

from __future__ import annotations

import random
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from lstm_sentiment.config import CONFIG_DIR

POSITIVE = "great excellent love wonderful perfect best amazing happy recommend superb".split()
NEGATIVE = "terrible awful hate broken worst waste poor refund disappointing useless".split()
NEUTRAL = "the this product it was a and item book i for with my of to in its".split()


def make_review(rng: random.Random, label: int, n_words: int | None = None) -> str:
    """A review whose sentiment words are mixed into neutral ones: learnable, not trivial."""
    n_words = n_words or rng.randint(5, 40)
    polar = POSITIVE if label else NEGATIVE
    words = [rng.choice(polar if rng.random() < 0.3 else NEUTRAL) for _ in range(n_words)]
    return f"{rng.choice(NEUTRAL)} {rng.choice(polar)}: {' '.join(words)} 2019."


def write_fasttext(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        label = rng.randint(0, 1)
        lines.append(f"__label__{label + 1} {make_review(rng, label)}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """train.ft.txt (600 reviews) and test.ft.txt (200) of synthetic reviews."""
    folder = tmp_path_factory.mktemp("reviews")
    write_fasttext(folder / "train.ft.txt", 600, seed=1)
    write_fasttext(folder / "test.ft.txt", 200, seed=2)
    return folder


def compose_config(
    config_name: str, tmp_path: Path, data_dir: Path, overrides: list[str] = ()
) -> DictConfig:
    """Compose a real config from conf/, shrunk to a seconds-long CPU run in ``tmp_path``."""
    base = [
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        "data.progress=false",
        "data.preprocess_workers=1",
        "data.batch_size=32",
    ]
    if config_name == "train":
        base += [
            "model.embedding_dim=16",
            "model.hidden_size=16",
            "trainer.max_epochs=2",
            "trainer.log_every_n_steps=1",
            "++trainer.enable_model_summary=false",
            "++callbacks.rich_progress_bar=null",
        ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name, overrides=[*base, *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} resolve outside @hydra.main
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "out")
    return cfg


@pytest.fixture
def train_cfg(tmp_path, tiny_data_dir):
    def make(*overrides: str) -> DictConfig:
        return compose_config("train", tmp_path, tiny_data_dir, list(overrides))

    return make


@contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
        "model.bidirectional=false",  # the per-token view needs a left-to-right network
    ]
    with torch_threads(1):
        _, trainer = train(compose_config("train", tmp, tiny_data_dir, overrides))
    return Path(trainer.checkpoint_callback.best_model_path)
