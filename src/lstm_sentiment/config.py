"""Config helpers: the resolvers the YAML files use, the schemas they are checked against
(registered once on import), the range rules, and building objects from config nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf

from lstm_sentiment.data.files import PROJECT_ROOT, default_data_dir
from lstm_sentiment.data.reviews import FORMATS
from lstm_sentiment.data.text import TOKENIZERS
from lstm_sentiment.errors import UserError
from lstm_sentiment.models.components.rnn_classifier import CELLS, RNN_TYPES, pooling_parts

CONFIG_DIR = str(PROJECT_ROOT / "conf")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("default_data_dir"):
        OmegaConf.register_new_resolver("default_data_dir", lambda: str(default_data_dir()))


register_resolvers()


# ---------------------------------------------------------------------------------------------
# Schemas. A setting's default lives in its YAML file (conf/data/*.yaml, conf/model/*.yaml) and
# nowhere else; its schema field here holds only the type (MISSING: no default, so a key the YAML
# forgets fails), a choice's type is an Enum of its values. Hydra checks both when it composes
# the config: a wrong type, an unknown key or a value outside a choice fails there, naming the key.
# RANGES holds the rules a type cannot express (> 0, a fraction), checked before any data is read.
# A new option: its default in the YAML, its type (or `choice(...)`) here, a RANGES rule if needed.


class Choice(str, Enum):
    """A setting that takes one of a few strings (``build`` hands constructors plain strings)."""

    def __str__(self) -> str:
        return self.value


def choice(name: str, values) -> type[Choice]:
    # module=: picklable by name (launchers that run jobs elsewhere pickle the config)
    return Choice(name, {value: value for value in values}, module=__name__)


FileFormat = choice("FileFormat", ("auto", *FORMATS))
Tokenizer = choice("Tokenizer", TOKENIZERS)
ValSource = choice("ValSource", ("train", "test_half"))
RnnType = choice("RnnType", RNN_TYPES)
Cell = choice("Cell", CELLS)
Scheduler = choice("Scheduler", ("none", "cosine", "plateau"))  # or null: none


@dataclass
class DataSchema:
    _target_: str = MISSING
    data_dir: str = MISSING
    train_file: Optional[str] = MISSING  # noqa: UP045 (OmegaConf reads typing.Optional)
    test_file: Optional[str] = MISSING  # noqa: UP045
    file_format: FileFormat = MISSING
    lowercase: bool = MISSING
    replace_digits: bool = MISSING
    replace_urls: bool = MISSING
    tokenizer: Tokenizer = MISSING
    max_len: int = MISSING
    min_freq: int = MISSING
    max_vocab_size: Optional[int] = MISSING  # noqa: UP045
    max_train_reviews: Optional[int] = MISSING  # noqa: UP045
    val_source: ValSource = MISSING
    val_fraction: float = MISSING
    split_seed: int = MISSING
    batch_size: int = MISSING
    eval_batch_size: Optional[int] = MISSING  # noqa: UP045
    bucket: bool = MISSING
    pool_batches: int = MISSING
    fixed_padding: bool = MISSING
    num_workers: int = MISSING
    preprocess_workers: Optional[int] = MISSING  # noqa: UP045
    cache_dir: str = MISSING
    max_bad_fraction: float = MISSING
    progress: bool = MISSING


@dataclass
class EmbeddingsSchema:
    path: Optional[str] = MISSING  # noqa: UP045
    freeze: bool = MISSING


@dataclass
class NetSchema:
    rnn_type: RnnType = MISSING
    embedding_dim: int = MISSING
    hidden_size: int = MISSING
    num_layers: int = MISSING
    bidirectional: bool = MISSING
    pooling: str = MISSING  # checked by RANGES: last|max|mean|attention, joined by +
    dropout: float = MISSING
    embedding_dropout: float = MISSING
    word_dropout: float = MISSING
    pack: bool = MISSING
    cell: Cell = MISSING
    record_gates: bool = MISSING


@dataclass
class ModelSchema:
    _target_: str = MISSING
    net: NetSchema = field(default_factory=NetSchema)
    lr: float = MISSING
    weight_decay: float = MISSING
    scheduler: Optional[Scheduler] = MISSING  # noqa: UP045
    embeddings: EmbeddingsSchema = field(default_factory=EmbeddingsSchema)


def register_schemas() -> None:
    store = ConfigStore.instance()
    store.store(group="data", name="schema", node=DataSchema)
    store.store(group="model", name="schema", node=ModelSchema)


register_schemas()


def _rule(test, text):
    return (test, text)


POSITIVE = _rule(lambda v: v > 0, "> 0")
POSITIVE_OR_NULL = _rule(lambda v: v is None or v > 0, "> 0 or null")
FRACTION = _rule(lambda v: 0 < v < 1, "in (0, 1)")
DROPOUT = _rule(lambda v: 0 <= v < 1, "in [0, 1)")


def _is_pooling(value: str) -> bool:
    try:
        return bool(pooling_parts(value))
    except ValueError:
        return False


# key -> (test, what it must be)
RANGES: dict[str, tuple] = {
    "data.max_len": POSITIVE,
    "data.min_freq": POSITIVE,
    "data.max_vocab_size": POSITIVE_OR_NULL,
    "data.max_train_reviews": _rule(lambda v: v is None or v >= 2, ">= 2 or null"),
    "data.val_fraction": FRACTION,
    "data.batch_size": POSITIVE,
    "data.eval_batch_size": POSITIVE_OR_NULL,
    "data.pool_batches": POSITIVE,
    "data.num_workers": _rule(lambda v: v >= 0, ">= 0"),
    "data.preprocess_workers": POSITIVE_OR_NULL,
    "data.max_bad_fraction": _rule(lambda v: 0 <= v <= 1, "in [0, 1]"),
    "model.net.embedding_dim": POSITIVE,
    "model.net.hidden_size": POSITIVE,
    "model.net.num_layers": POSITIVE,
    "model.net.dropout": DROPOUT,
    "model.net.embedding_dropout": DROPOUT,
    "model.net.word_dropout": DROPOUT,
    "model.net.pooling": _rule(_is_pooling, "last, max, mean or attention, or several joined by +"),
    "model.lr": POSITIVE,
    "model.weight_decay": _rule(lambda v: v >= 0, ">= 0"),
    # 0 trains nothing, and testing would report untrained weights; -1 is Lightning's "no limit"
    "trainer.max_epochs": _rule(lambda v: v is None or v == -1 or v >= 1, ">= 1 (or -1: no limit)"),
    "trainer.max_steps": _rule(lambda v: v is None or v == -1 or v >= 1, ">= 1 (or -1: no limit)"),
    "trainer.limit_train_batches": _rule(lambda v: v is None or v > 0, "> 0"),
}


class ConfigValueError(UserError):
    """A config value of the right type that cannot be used (out of range, or not here)."""


def check_ranges(cfg) -> None:
    """Raise ``ConfigValueError`` naming the first out-of-range key."""
    for key, (ok, rule) in RANGES.items():
        value = OmegaConf.select(cfg, key, default="<absent>")
        if value != "<absent>" and not ok(value):
            raise ConfigValueError(f"{key}={value!r} is invalid: it must be {rule}")


# ---------------------------------------------------------------------------------------------
# Building objects


def plain(node: DictConfig) -> dict[str, Any]:
    """A config node as plain dicts, lists and values: interpolations resolved, choices as
    strings (what a checkpoint's hyperparameters and TensorBoard take)."""
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True, throw_on_missing=True)


def make(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, except that a ``UserError`` raised by the constructor (a
    missing tokenizer download, say) comes out as itself: Hydra wraps every error in an
    ``InstantiationException``, which would bury the message under a traceback."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``make`` of a node with a ``_target_``, given plain values (nested nodes such as
    ``model.net`` arrive as plain dicts, which a checkpoint's hparams can hold)."""
    return make(plain(node), _convert_="all", **kwargs)


def instantiate_all(group: DictConfig | None) -> list:
    """Each entry of a config group like ``callbacks`` or ``logger`` that names a ``_target_``."""
    if not group:
        return []
    return [make(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def yaml_settings(option: str) -> dict[str, Any]:
    """One option's YAML file as it stands (``data/amazon_polarity``: its defaults), without
    ``defaults`` and ``_target_`` and with interpolations unresolved: for tests and benchmarks
    that build objects without composing a whole config."""
    node = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / f"{option}.yaml"))
    return {k: v for k, v in node.items() if k not in ("defaults", "_target_")}
