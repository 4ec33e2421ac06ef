"""The measured pieces of work, each run in its own interpreter by ``measure.measured``.

Every task times only its pipeline (not the interpreter start or its imports) and returns a
JSON-able dict. Imports are inside the tasks so each process loads only what its pipeline needs
(the reference preprocessing never imports torch, for one).
"""

from __future__ import annotations

import json
import resource
import time
import warnings
import zlib
from pathlib import Path

MB = 1 << 20


def _cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (the tokenizing workers)."""
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _crc(tokens: list[str]) -> int:
    return zlib.crc32("\n".join(tokens).encode())


def _folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.iterdir()) / MB


# ---------------------------------------------------------------------------------------------
# preprocessing


def reference_preprocess(train_path: str, test_path: str) -> dict:
    """The tutorial's pipeline; also a checksum of each review's tokens for the identity check."""
    from benchmarks import reference_recipe as recipe

    tokenize = recipe.word_tokenize()
    crcs: list[int] = []
    start, cpu = time.perf_counter(), _cpu_seconds()
    out = recipe.preprocess(
        train_path, test_path, tokenize, on_tokens=lambda t: crcs.append(_crc(t))
    )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu,
        "reviews": len(out["train"]) + len(out["test"]),
        "vocab": len(out["vocab"]),
        "tokenizer": f"{tokenize.__module__}.{tokenize.__name__}",
        "matrix_mb": (out["train"].nbytes + out["test"].nbytes) / MB,
        "crcs": crcs,
    }


def ours_on_reference_text(train_path: str, test_path: str) -> dict:
    """Our treebank tokenizer on the reference's cleaned text, as checksums per review."""
    from benchmarks import reference_recipe as recipe
    from lstm_sentiment.data.text import treebank_tokenize

    crcs = []
    for path in (train_path, test_path):
        _, sentences = recipe.read_lines(path)
        crcs += [_crc(treebank_tokenize(s)) for s in recipe.clean(sentences)]
    return {"crcs": crcs}


def _spec(train_path: str, test_path: str, tokenizer: str):
    """The recipe's preprocessing (lowercase, digits -> 0, URLs, max_len 200, min count 2) with
    our tokenizer, fixed here so that rows compare across versions of the project's defaults."""
    from lstm_sentiment.data.cache import CacheSpec
    from lstm_sentiment.data.encoder import TextEncoder
    from lstm_sentiment.data.text import TextPipeline

    pipeline = TextPipeline(lowercase=True, replace_digits=True, replace_urls=True,
                            tokenizer=tokenizer)  # fmt: skip
    return CacheSpec(train_path, test_path, TextEncoder(pipeline, max_len=200), min_freq=2,
                     max_vocab_size=None, file_format="auto", max_train_reviews=None,
                     sample_seed=0)  # fmt: skip


def ours_cold(
    train_path: str, test_path: str, tokenizer: str, cache_dir: str, workers=None
) -> dict:
    """Our cache build from nothing: parallel tokenization, vocabulary, ids on disk."""
    from lstm_sentiment.data.cache import build_cache, default_workers

    spec = _spec(train_path, test_path, tokenizer)
    start, cpu = time.perf_counter(), _cpu_seconds()
    folder = build_cache(spec, cache_dir, workers, max_bad_fraction=1.0, progress=False)
    seconds = time.perf_counter() - start
    meta = json.loads((folder / "meta.json").read_text())
    return {
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu,
        "reviews": sum(s["reviews"] for s in meta["splits"].values()),
        "vocab": meta["vocab_size"],
        "cache_mb": _folder_mb(folder),
        "workers": workers or default_workers(),
    }


def ours_warm(train_path: str, test_path: str, tokenizer: str, cache_dir: str) -> dict:
    """What a training run does with a built cache: ``build_cache`` finds it valid (the
    DataModule's ``prepare_data``), then ``load_cache`` (its ``setup``)."""
    from lstm_sentiment.data import cache

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the warm run rebuilt the cache")

    cache._build_into = no_rebuild
    spec = _spec(train_path, test_path, tokenizer)
    start, cpu = time.perf_counter(), _cpu_seconds()
    spec.key()  # hashes both files, whole (a process hashes a file once; build_cache reuses it)
    hashing = time.perf_counter() - start
    folder = cache.build_cache(spec, cache_dir, None, max_bad_fraction=1.0, progress=False)
    vocab, splits = cache.load_cache(folder)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "hash_seconds": hashing,
        "cpu_seconds": _cpu_seconds() - cpu,
        "reviews": sum(len(s) for s in splits.values()),
        "vocab": len(vocab),
    }


# ---------------------------------------------------------------------------------------------
# training


def _datamodule(data_dir: str, cache_dir: str, batch_size: int, **kwargs):
    """The data config's defaults with the recipe's max_len 200 and ``kwargs``."""
    from lstm_sentiment.config import yaml_settings
    from lstm_sentiment.data.datamodule import ReviewDataModule

    settings = {**yaml_settings("data/amazon_polarity"), "data_dir": data_dir,
                "cache_dir": cache_dir, "max_len": 200, "batch_size": batch_size,
                "eval_batch_size": 256, "preprocess_workers": 1, "progress": False}  # fmt: skip
    dm = ReviewDataModule(**{**settings, **kwargs})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _left_padded(dataset):
    """A split as the reference recipe holds it: a left-padded int64 matrix and labels."""
    import numpy as np

    from benchmarks.reference_recipe import pad_input

    split = dataset.split
    features = pad_input([split.review(j) for j in dataset.indices])
    return features, np.asarray(split.labels[dataset.indices], dtype=np.int64)


def train_raw(
    data_dir: str,
    cache_dir: str,
    epochs: int,
    batch_size: int,
    model: dict,
    seed: int,
    threads: int,
):
    import torch

    torch.set_num_threads(threads)

    from benchmarks.reference_loop import SentimentNet, accuracy, train_loop

    dm = _datamodule(data_dir, cache_dir, batch_size)
    train_x, train_y = _left_padded(dm.datasets["train"])
    test_x, test_y = _left_padded(dm.datasets["test"])
    torch.manual_seed(seed)
    net = SentimentNet(
        len(dm.vocab), model["embedding_dim"], model["hidden_size"], drop_prob=model["dropout"]
    )
    run = train_loop(net, train_x, train_y, epochs, batch_size, lr=model["lr"], seed=seed)
    return {**run, "test_acc": accuracy(net, test_x, test_y), "threads": torch.get_num_threads()}


def epoch_timer():
    """A Lightning callback summing the wall and CPU seconds of the training epochs alone."""
    import lightning.pytorch as pl

    class EpochTimer(pl.Callback):
        seconds = cpu_seconds = 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            self.start, self.cpu = time.perf_counter(), time.process_time()

        def on_train_epoch_end(self, trainer, pl_module):
            self.seconds += time.perf_counter() - self.start
            self.cpu_seconds += time.process_time() - self.cpu

    return EpochTimer()


def timed_trainer(epochs: int, **kwargs):
    """The benchmarks' Trainer (CPU, clip 5, no validation, logging or checkpoints) and the
    ``epoch_timer`` that times its training epochs."""
    import lightning.pytorch as pl

    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*You defined a `validation_step`.*")
    timer = epoch_timer()
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=5.0,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer], **kwargs,
    )  # fmt: skip
    return trainer, timer


def train_ours(
    data_dir: str,
    cache_dir: str,
    epochs: int,
    batch_size: int,
    model: dict,
    seed: int,
    threads: int,
    fixed_padding: bool,
    bucket: bool,
    pack: bool,
    pool_batches: int = 50,
):
    import torch

    torch.set_num_threads(threads)

    dm = _datamodule(
        data_dir, cache_dir, batch_size, fixed_padding=fixed_padding, bucket=bucket,
        pool_batches=pool_batches,
    )  # fmt: skip
    torch.manual_seed(seed)
    module = bench_module(len(dm.vocab), model, pack)
    trainer, timer = timed_trainer(epochs)
    trainer.fit(module, datamodule=dm)
    train = dm.datasets["train"]
    return {
        "seconds": timer.seconds,
        "cpu_seconds": timer.cpu_seconds,
        "samples": epochs * len(train),
        "tokens": epochs * int(train.lengths.sum()),
        "test_acc": _accuracy(module.net, dm.test_dataloader()),
        "threads": torch.get_num_threads(),
    }


def bench_module(vocab_size: int, model: dict, pack: bool):
    """A SentimentModule of the benchmarks' fixed shape: ``model`` gives embedding_dim,
    hidden_size, num_layers, dropout, lr (and bidirectional, else one-directional); the rest is
    the recipe's (the state after the last token, no embedding or word dropout), fixed here so
    that rows compare across versions of the project's defaults."""
    from lstm_sentiment.models.sentiment_module import SentimentModule

    net = {k: model[k] for k in ("embedding_dim", "hidden_size", "num_layers", "dropout")}
    net.update(rnn_type="lstm", bidirectional=model.get("bidirectional", False), pooling="last",
               embedding_dropout=0.0, word_dropout=0.0, pack=pack, cell="torch",
               record_gates=False)  # fmt: skip
    return SentimentModule(vocab_size=vocab_size, net=net, lr=model["lr"], weight_decay=0.0,
                           scheduler=None, embeddings={"path": None, "freeze": False})  # fmt: skip


def _accuracy(net, loader) -> float:
    import torch

    net.eval()
    right = total = 0
    with torch.no_grad():
        for batch in loader:
            logits = net(batch["ids"], batch["lengths"])
            right += int(((logits > 0).float() == batch["labels"]).sum())
            total += len(batch["labels"])
    return right / total


def pack_vs_mask(widths: list[int], model: dict, threads: int, batch_size: int, reps: int) -> dict:
    """Forward + backward of one batch, packed vs padded-and-gathered, interleaved, per width.

    A bucketed batch: lengths drawn from [0.9 * width, width]; the same weights for both."""
    import statistics

    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nets = {pack: bench_module(20_000, model, pack).net for pack in (True, False)}
    nets[False].load_state_dict(nets[True].state_dict())
    out = {}
    for width in widths:
        ids = torch.randint(2, 20_000, (batch_size, width))
        lengths = torch.randint(max(1, int(0.9 * width)), width + 1, (batch_size,))
        times: dict[bool, list[float]] = {True: [], False: []}
        for rep in range(reps + 1):
            for pack, net in nets.items():
                start = time.perf_counter()
                net.zero_grad()
                net(ids, lengths).sum().backward()
                if rep:  # the first is a warm-up
                    times[pack].append(time.perf_counter() - start)
        out[str(width)] = {"pack": statistics.median(times[True]),
                           "mask": statistics.median(times[False])}  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# the peer: fastText on the reviews our default training run uses

FASTTEXT_TOKEN = r"\w+|[^\w\s]"  # the sample README's reference tokens (one character of punct.)


def fasttext_line(label: int, text: str) -> str:
    """``__label__<0|1> tokens``: the sample README's reference cleaning (lowercase, each digit
    to 0, ``\\w+|[^\\w\\s]`` tokens joined by spaces)."""
    import re

    tokens = re.findall(FASTTEXT_TOKEN, re.sub(r"\d", "0", text.lower()))
    return f"__label__{label} {' '.join(tokens)}\n"


def peer_data(overrides: list[str], out_dir: str) -> dict:
    """Our default config's split, written as fastText training and test files.

    Composes ``train.yaml`` with ``overrides`` (what every training run of the section gets,
    less its seed and output folder), builds its DataModule's token cache (the runs then find it)
    and asks that DataModule for its split: fastText trains on the training file's reviews at
    ``datasets["train"].indices`` (the file minus the validation reviews held out) or on every
    review, and is tested at ``datasets["test"].indices``. The review file is read with the
    project's reader, so index ``i`` is the cache's review ``i``; labels are checked to match.
    """
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lstm_sentiment.config import CONFIG_DIR, build
    from lstm_sentiment.data.reviews import read_reviews

    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", overrides=overrides)
    dm = build(cfg.data)
    start = time.perf_counter()
    dm.prepare_data()
    tokenize_seconds = time.perf_counter() - start
    dm.setup("fit")
    spec = dm.spec()

    out, files, sizes = Path(out_dir), {}, {}
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for name, path, dataset in (
        ("train_ours", spec.train_path, dm.datasets["train"]),
        ("train_all", spec.train_path, None),
        ("test", spec.test_path, dm.datasets["test"]),
    ):
        records = list(read_reviews(path, spec.file_format))
        if dataset is not None:
            labels = [label for label, _ in records]
            if len(records) != len(dataset.split) or labels != dataset.split.labels.tolist():
                raise AssertionError(f"{path}: the reviews read do not line up with the cache's")
            records = [records[i] for i in dataset.indices]
        files[name] = str(out / f"{name}.txt")
        with open(files[name], "w", encoding="utf-8") as f:
            f.writelines(fasttext_line(label, text) for label, text in records)
        sizes[name] = len(records)
    return {
        **files,
        "sizes": {**sizes, "val": len(dm.datasets["val"])},
        "tokenize_seconds": tokenize_seconds,
        "fasttext_prepare_seconds": time.perf_counter() - start,
        "torch_threads": torch.get_num_threads(),
        "max_epochs": cfg.trainer.max_epochs,
        # the network's settings (model.net) and the training's (lr, ...), flat
        "model": {
            k: v
            for node in (cfg.model.net, cfg.model)
            for k, v in OmegaConf.to_container(node, resolve=True).items()
            if not isinstance(v, dict | list)
        },
    }


def fasttext_run(train_path: str, test_path: str, seed: int, params: dict) -> dict:
    """Train fastText's supervised classifier, then predict the test file: timed together."""
    import fasttext

    with open(test_path, encoding="utf-8") as f:
        labels, texts = zip(*(line.rstrip("\n").split(" ", 1) for line in f), strict=True)
    start = time.perf_counter()
    model = fasttext.train_supervised(train_path, seed=seed, verbose=0, **params)
    predicted = [p[0] for p in model.predict(list(texts), k=1)[0]]
    seconds = time.perf_counter() - start
    right = sum(p == y for p, y in zip(predicted, labels, strict=True))
    return {
        "seconds": seconds,
        "test_acc": right / len(labels),
        "predictions_crc": _crc(predicted),
    }
