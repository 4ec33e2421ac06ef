"""Config helpers: the resolvers the YAML files use and the schemas they are checked against,
registered once on import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from lstm_sentiment.data.files import PROJECT_ROOT, default_data_dir

CONFIG_DIR = str(PROJECT_ROOT / "conf")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("default_data_dir"):
        OmegaConf.register_new_resolver("default_data_dir", lambda: str(default_data_dir()))


register_resolvers()


# ---------------------------------------------------------------------------------------------
# Schemas: Hydra checks every data.* and model.* value's type at composition against these
# (a wrong type or an unknown key fails there, naming the key); check_ranges() then checks the
# values that a type cannot, before any data is read.


@dataclass
class DataSchema:
    _target_: str = "lstm_sentiment.data.datamodule.ReviewDataModule"
    data_dir: str = MISSING
    train_file: Optional[str] = None  # noqa: UP045 (OmegaConf reads typing.Optional)
    test_file: Optional[str] = None  # noqa: UP045
    file_format: str = "auto"
    lowercase: bool = True
    replace_digits: bool = True
    replace_urls: bool = True
    tokenizer: str = "wordpunct"
    max_len: int = 200
    min_freq: int = 2
    max_vocab_size: Optional[int] = None  # noqa: UP045
    max_train_reviews: Optional[int] = None  # noqa: UP045
    val_source: str = "train"
    val_fraction: float = 0.1
    split_seed: int = 0
    batch_size: int = 64
    eval_batch_size: Optional[int] = None  # noqa: UP045
    bucket: bool = True
    pool_batches: int = 50
    fixed_padding: bool = False
    num_workers: int = 0
    preprocess_workers: Optional[int] = None  # noqa: UP045
    cache_dir: str = ".cache/reviews"
    max_bad_fraction: float = 0.01
    progress: bool = True


@dataclass
class EmbeddingsSchema:
    path: Optional[str] = None  # noqa: UP045
    freeze: bool = False


@dataclass
class ModelSchema:
    _target_: str = "lstm_sentiment.models.sentiment_module.SentimentModule"
    rnn_type: str = "lstm"
    embedding_dim: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.3
    bidirectional: bool = False
    pooling: str = "last"
    embedding_dropout: float = 0.0
    word_dropout: float = 0.0
    pack: bool = True
    cell: str = "torch"
    record_gates: bool = False
    lr: float = 3e-3
    weight_decay: float = 0.0
    scheduler: Optional[str] = None  # noqa: UP045
    embeddings: EmbeddingsSchema = field(default_factory=EmbeddingsSchema)


def _rule(test, text):
    return (test, text)


def one_of(*choices):
    return _rule(lambda v: v in choices, " | ".join(map(str, choices)))


POSITIVE = _rule(lambda v: v > 0, "> 0")
POSITIVE_OR_NULL = _rule(lambda v: v is None or v > 0, "> 0 or null")
FRACTION = _rule(lambda v: 0 < v < 1, "in (0, 1)")
# key -> (test, what it must be)
RANGES: dict[str, tuple] = {
    "data.file_format": one_of("auto", "fasttext", "csv"),
    "data.tokenizer": one_of("wordpunct", "treebank", "punkt"),
    "data.max_len": POSITIVE,
    "data.min_freq": POSITIVE,
    "data.max_vocab_size": POSITIVE_OR_NULL,
    "data.max_train_reviews": _rule(lambda v: v is None or v >= 2, ">= 2 or null"),
    "data.val_source": one_of("train", "test_half"),
    "data.val_fraction": FRACTION,
    "data.batch_size": POSITIVE,
    "data.eval_batch_size": POSITIVE_OR_NULL,
    "data.pool_batches": POSITIVE,
    "data.num_workers": _rule(lambda v: v >= 0, ">= 0"),
    "data.preprocess_workers": POSITIVE_OR_NULL,
    "data.max_bad_fraction": _rule(lambda v: 0 <= v <= 1, "in [0, 1]"),
    "model.rnn_type": one_of("lstm", "gru", "rnn"),
    "model.cell": one_of("torch", "scratch"),
    "model.embedding_dim": POSITIVE,
    "model.hidden_size": POSITIVE,
    "model.num_layers": POSITIVE,
    "model.dropout": _rule(lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.lr": POSITIVE,
    "model.weight_decay": _rule(lambda v: v >= 0, ">= 0"),
    "model.scheduler": one_of(None, "none", "cosine", "plateau"),
}


class ConfigValueError(ValueError):
    """A config value of the right type but out of range."""


def check_ranges(cfg) -> None:
    """Raise ``ConfigValueError`` naming the first out-of-range key."""
    for key, (ok, rule) in RANGES.items():
        value = OmegaConf.select(cfg, key, default="<absent>")
        if value != "<absent>" and not ok(value):
            raise ConfigValueError(f"{key}={value!r} is invalid: it must be {rule}")


def register_schemas() -> None:
    store = ConfigStore.instance()
    store.store(group="data", name="schema", node=DataSchema)
    store.store(group="model", name="schema", node=ModelSchema)


register_schemas()
