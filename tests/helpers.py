"""Helpers the tests share (fixtures are in conftest.py): tiny review files, composed and
shrunk configs, data objects built from conf/'s defaults, batches, TensorBoard events."""

from __future__ import annotations

import os
import random
import resource
import signal
import struct
import subprocess
import zipfile
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from lstm_sentiment.config import CONFIG_DIR, yaml_settings
from lstm_sentiment.data.datamodule import ReviewDataModule
from lstm_sentiment.data.text import TextPipeline
from lstm_sentiment.models.components.rnn_classifier import RNNClassifier
from lstm_sentiment.models.sentiment_module import SentimentModule

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
            "model.net.embedding_dim=16",
            "model.net.hidden_size=16",
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


class StepCounter(pl.Callback):
    """Counts the optimizer steps this process runs (a resume that ignored its checkpoint would
    run them all again, reaching the same final step count); with ``path``, writes the count
    there when the fit ends (for a training run in a subprocess: ``+callbacks.steps=...``)."""

    def __init__(self, path: str | None = None):
        self.steps, self.path = 0, path

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.steps += 1

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.path:
            Path(self.path).write_text(str(self.steps))


def step_counter(trainer) -> StepCounter:
    return next(c for c in trainer.callbacks if isinstance(c, StepCounter))


# the defaults of conf/data/amazon_polarity.yaml, the one place that holds them
DATA_DEFAULTS = yaml_settings("data/amazon_polarity")


def data_module(data_dir: str | Path, cache_dir: str | Path, **overrides) -> ReviewDataModule:
    """The DataModule with the data config's defaults, reading ``data_dir``."""
    settings = {**DATA_DEFAULTS, "data_dir": str(data_dir), "cache_dir": str(cache_dir)}
    return ReviewDataModule(**{**settings, **overrides})


def text_pipeline(**overrides) -> TextPipeline:
    """The data config's default cleaning and tokenizer, with ``overrides``."""
    keys = ("lowercase", "replace_digits", "replace_urls", "tokenizer")
    return TextPipeline(**{**{k: DATA_DEFAULTS[k] for k in keys}, **overrides})


@contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def batch_of(lengths: list[int], vocab: int = 50, width: int | None = None, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(2, vocab, (n,), generator=gen)
    return ids, torch.tensor(lengths)


def read_events(logdir: str | Path) -> EventAccumulator:
    """Every event file in ``logdir``, nothing sampled away."""
    events = EventAccumulator(
        str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0, "histograms": 0}
    )
    events.Reload()
    return events


def read_hparams(events: EventAccumulator) -> dict:
    """The run's hyperparameters, as its HPARAMS entry shows them (its metrics are the ``hp/*``
    scalars); the run must have ended as a success."""
    records = {
        tag: plugin_data_pb2.HParamsPluginData.FromString(content)
        for tag, content in events.PluginTagToContent("hparams").items()
    }
    # no per-run "experiment" record: TensorBoard builds the table from all runs
    assert set(records) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
    assert records["_hparams_/session_end_info"].session_end_info.status == api_pb2.STATUS_SUCCESS
    hparams = records["_hparams_/session_start_info"].session_start_info.hparams
    return {key: getattr(value, value.WhichOneof("kind")) for key, value in hparams.items()}


# The network the model tests take unless they say otherwise: small, and the recipe's shape (one
# direction, the state after the last token, packed), whatever the project's default becomes.
SMALL_NET = dict(
    rnn_type="lstm",
    embedding_dim=8,
    hidden_size=8,
    num_layers=1,
    bidirectional=False,
    pooling="last",
    dropout=0.3,
    embedding_dropout=0.0,
    word_dropout=0.0,
    pack=True,
    cell="torch",
    record_gates=False,
)


def small_net(vocab_size: int = 50, **overrides) -> RNNClassifier:
    return RNNClassifier(vocab_size=vocab_size, **{**SMALL_NET, **overrides})


def small_module(vocab_size: int = 50, net: dict | None = None, **overrides) -> SentimentModule:
    """A SentimentModule around ``small_net`` (``net`` overrides some of its arguments), with the
    model config's training defaults."""
    model = yaml_settings("model/lstm")
    settings = {k: model[k] for k in ("lr", "weight_decay", "scheduler", "embeddings")}
    return SentimentModule(
        vocab_size=vocab_size, net={**SMALL_NET, **(net or {})}, **{**settings, **overrides}
    )


def flip_bytes_inside(ckpt: Path, out: Path, count: int = 16) -> Path:
    """A copy of ``ckpt`` with ``count`` bytes inverted in the middle of its largest tensor: the
    same size and a whole zip archive (not truncated), only that member's CRC-32 is now wrong."""
    data = bytearray(ckpt.read_bytes())
    with zipfile.ZipFile(ckpt) as archive:
        tensors = [i for i in archive.infolist() if "/data/" in i.filename]
    info = max(tensors, key=lambda i: i.file_size)
    header = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[header + 26 : header + 30])
    start = header + 30 + name_len + extra_len + info.file_size // 2
    data[start : start + count] = bytes(b ^ 0xFF for b in data[start : start + count])
    out.write_bytes(data)
    return out


def run_with_file_size_limit(
    cmd: list[str], limit: int, **kwargs
) -> subprocess.CompletedProcess[str]:
    """``cmd`` with every file it writes capped at ``limit`` bytes: a write past the cap fails
    with EFBIG, as one on a full disk fails with ENOSPC (SIGXFSZ, which would kill it, ignored)."""

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        cmd, preexec_fn=cap, env=env, capture_output=True, text=True, timeout=180, **kwargs
    )
