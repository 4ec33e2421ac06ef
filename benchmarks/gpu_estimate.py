"""The README's "one GPU" column, estimated: no GPU is lent to this project's machines, so each
documented run's work is measured on the shipped sample and priced with the cuDNN LSTM times
DeepBench measured on an NVIDIA V100 (FP32).

    .venv/bin/python -m benchmarks.run --section gpu_estimate

Per run, from its composed config (``train.yaml`` with the run's overrides):

- batches: its training reviews / batch size, times ``max_epochs`` (an upper bound where early
  stopping ends sooner); validation each epoch and the test once, at ``eval_batch_size``. On the
  full set the sizes follow from ``FULL_SET_SIZES``, ``max_train_reviews`` and the validation split;
- widths: the mean padded width of its batches (bucketed by length), from its loaders on the sample;
- the LSTM: layers x directions (each runs on its own) x width x the time of one LSTM time step at
  the run's hidden size and batch (forward and backward in training, forward alone in evaluation),
  from a fit ``a + b*H + c*N*H^2`` to DeepBench's V100 FP32 LSTM training rows (below);
- the rest of a step, the Python side a GPU does not speed up (Lightning's loop, embedding, word
  dropout, pooling, loss, clipping, the optimizer's kernel launches): timed here on the run's
  network shrunk to width 4 over 4 tokens;
- parameter memory traffic per training step (Adam, the embedding's dense gradient, clipping, EMA:
  ``TRAFFIC_BYTES`` per parameter) at the V100's ``V100_BYTES_PER_S``; on the full set the
  vocabulary is extrapolated from its growth over the sample (Heaps' law, V = k * n^beta);
- reading and tokenizing: this machine's rate on reviews drawn from the sample, times the run's
  reviews (the full_cpu run reads all 3.6M lines, then tokenizes its 200,000: reading is left out).

Left out: data loading overlapped or not, cuDNN's algorithm choice, mixed precision, a faster GPU.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

import numpy as np

from lstm_sentiment.data.files import FULL_SET_SIZES, find_review_file

# DeepBench (github.com/baidu-research/DeepBench, results/train/DeepBench_NV_V100.xlsx at commit
# 30c5115, sheet "Results FP32", "Recurrent Layers - LSTM"): hidden units, batch, time steps, ms
# forward, ms backward wrt inputs, ms backward wrt weights (input size = hidden size).
DEEPBENCH_V100_LSTM = (
    (512, 16, 25, 1.095, 0.937, 0.165),
    (512, 32, 25, 1.144, 1.014, 0.271),
    (512, 64, 25, 1.341, 1.257, 0.436),
    (512, 128, 25, 1.559, 1.594, 0.703),
    (1024, 16, 25, 1.923, 1.657, 0.445),
    (1024, 32, 25, 1.978, 1.746, 0.698),
    (1024, 64, 25, 2.205, 2.044, 1.158),
    (1024, 128, 25, 3.249, 3.017, 2.107),
    (2048, 16, 25, 3.609, 3.137, 1.254),
    (2048, 32, 25, 3.684, 3.312, 2.167),
    (2048, 64, 25, 5.570, 4.871, 4.100),
    (2048, 128, 25, 9.294, 8.450, 7.847),
    (4096, 16, 25, 10.009, 9.144, 4.326),
    (4096, 32, 25, 10.512, 9.550, 7.692),
    (4096, 64, 25, 16.598, 15.345, 14.648),
    (4096, 128, 25, 31.169, 29.969, 28.487),
    (1536, 8, 50, 5.097, 4.571, 0.831),
    (1536, 16, 50, 5.372, 4.640, 1.327),
    (1536, 32, 50, 5.574, 4.815, 2.420),
    (256, 16, 150, 4.542, 5.073, 0.221),
    (256, 32, 150, 4.899, 5.476, 0.404),
    (256, 64, 150, 6.700, 5.802, 0.605),
)
V100_BYTES_PER_S = 900e9  # HBM2 bandwidth
# float32 reads and writes per parameter and step: Adam (gradient, weight, two moments: 7),
# the dense embedding gradient (zero, accumulate: 2), clipping (norm, scale: 3), EMA (3), 1 spare
TRAFFIC_BYTES = 16 * 4

# the README's rows: the command a user types, and the overrides that compose its config
RUNS = {
    "make train": [],
    "experiment=full_cpu (after make data)": ["experiment=full_cpu"],
    "experiment=reference trainer=gpu (after make data)": ["experiment=reference"],
}
ON_SAMPLE = "make train"  # the one run whose data is the shipped sample itself
RATE_REVIEWS = 100_000  # training reviews drawn from the sample to time tokenizing for the others


def fit_step_ms(training: bool) -> tuple[np.ndarray, float]:
    """Weights of ``a + b*H + c*N*H^2``, the ms of one LSTM time step (forward and backward, or
    forward alone), least squares in relative error over DeepBench's rows; and the largest
    relative error of the fit on those rows."""
    rows = np.array(DEEPBENCH_V100_LSTM)
    hidden, batch, steps = rows[:, 0], rows[:, 1], rows[:, 2]
    ms = rows[:, 3:6].sum(1) if training else rows[:, 3]
    ms = ms / steps
    x = np.stack([np.ones_like(hidden), hidden, batch * hidden * hidden], axis=1)
    weights = np.linalg.lstsq(x / ms[:, None], np.ones_like(ms), rcond=None)[0]
    return weights, float(np.abs(x @ weights / ms - 1).max())


def step_ms(weights: np.ndarray, hidden: int, batch: int) -> float:
    return float(weights @ np.array([1.0, hidden, batch * hidden * hidden]))


def compose(overrides: list[str], cache_dir: str, data_dir: Path):
    """The run's config set to read all of ``data_dir``, and the run's own ``max_train_reviews``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lstm_sentiment.config import CONFIG_DIR

    common = [f"paths.data_dir={data_dir}", f"paths.cache_dir={cache_dir}", "data.progress=false"]
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = hydra_compose("train", overrides=[*overrides, *common])
    run_limit, cfg.data.max_train_reviews = cfg.data.max_train_reviews, None
    return cfg, run_limit


def vocabulary_growth(dm, min_freq: int) -> tuple[float, float]:
    """``(k, beta)`` of V = k * n^beta: the vocabulary (words seen ``min_freq`` times) of the
    first n training reviews of the sample, fitted over n = 500, 1000, ... all."""
    from lstm_sentiment.data.reviews import read_reviews

    spec = dm.spec()
    order = dm.datasets["train"].indices  # the reviews the vocabulary is built from
    texts = [text for _, text in read_reviews(spec.train_path, spec.file_format)]
    counts: Counter[str] = Counter()
    points, target = [], 500
    for seen, i in enumerate(sorted(order), start=1):
        counts.update(dm.encoder.pipeline(texts[i]))
        if seen == target or seen == len(order):
            points.append((seen, sum(1 for c in counts.values() if c >= min_freq)))
            target *= 2
    n, v = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    beta, log_k = np.polyfit(n, v, 1)
    return float(np.exp(log_k)), float(beta)


def tokenize_rate(overrides: list[str], work: str, data_dir: Path) -> float:
    """Reviews read and tokenized per second by the run's data settings on this machine, over
    ``RATE_REVIEWS`` drawn from ``data_dir`` (the sample alone is too small to amortize the
    workers' start)."""
    from benchmarks.run import resample
    from lstm_sentiment.config import build

    folder = Path(work) / "rate"
    folder.mkdir()
    for split, n in (("train", RATE_REVIEWS), ("test", RATE_REVIEWS // 10)):
        source = find_review_file(data_dir, split)
        plain = source.name.removesuffix(".bz2").removesuffix(".gz")  # resample writes plain text
        resample(source, folder / plain, n, seed=0)
    cfg, _ = compose(overrides, str(folder / "cache"), data_dir=folder)
    dm = build(cfg.data)
    start = time.perf_counter()
    dm.prepare_data()
    return (RATE_REVIEWS + RATE_REVIEWS // 10) / (time.perf_counter() - start)


def python_side_ms(overrides: list[str], cache_dir: str, data_dir: Path) -> tuple[float, float]:
    """Ms per training step and per evaluation batch of the run's network shrunk to width 4
    over 4 tokens, on this CPU: what stays on the Python side when a GPU does the arithmetic."""
    import lightning.pytorch as pl

    from benchmarks.tasks import timed_trainer
    from lstm_sentiment.config import build

    tiny = ["model.net.embedding_dim=4", "model.net.hidden_size=4", "data.max_len=4"]
    cfg, _ = compose([*overrides, *tiny], cache_dir, data_dir)
    dm = build(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    module = build(cfg.model, vocab_size=dm.vocab_size)
    trainer, timer = timed_trainer(3)
    trainer.fit(module, datamodule=dm)
    train_ms = 1e3 * timer.seconds / trainer.global_step
    tester = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    loader = dm.val_dataloader()
    start = time.perf_counter()
    tester.validate(module, dataloaders=loader, verbose=False)
    return train_ms, 1e3 * (time.perf_counter() - start) / len(loader)


def estimate(name: str, fits: dict, work: str, data_dir: Path) -> dict:
    """The run's sizes, widths and times (see the module's docstring), ``data_dir`` standing for
    its data (the sample; for the full set, its reviews' lengths and vocabulary growth)."""
    from lstm_sentiment.config import build

    overrides = RUNS[name]
    cfg, run_limit = compose(overrides, work, data_dir)
    data, net = cfg.data, cfg.model.net
    dm = build(data)
    start = time.perf_counter()
    dm.prepare_data()  # reads and tokenizes the sample, builds the vocabulary
    prepare_s = time.perf_counter() - start
    dm.setup("fit")
    sizes = {split: len(dm.datasets[split]) for split in ("train", "val", "test")}
    train_width = float(np.mean([b["ids"].shape[1] for b in dm.train_dataloader()]))
    eval_width = float(np.mean([b["ids"].shape[1] for b in dm.test_dataloader()]))
    params = sum(p.numel() for p in build(cfg.model, vocab_size=dm.vocab_size).parameters())
    vocab = dm.vocab_size

    if name != ON_SAMPLE:  # the full set's sizes, split as the run's config splits them
        total, test = run_limit or FULL_SET_SIZES["train"], FULL_SET_SIZES["test"]
        sizes = dm.split_sizes(total, test)
        k, beta = vocabulary_growth(dm, data.min_freq)
        full_vocab = round(k * sizes["train"] ** beta)
        if data.max_vocab_size:
            full_vocab = min(full_vocab, data.max_vocab_size)
        params += (full_vocab - vocab) * net.embedding_dim
        vocab = full_vocab
        prepare_s = (total + test) / tokenize_rate(overrides, work, data_dir)

    epochs = cfg.trainer.max_epochs
    train_batches = epochs * math.ceil(sizes["train"] / data.batch_size)
    eval_batches = epochs * math.ceil(sizes["val"] / data.eval_batch_size) + math.ceil(
        sizes["test"] / data.eval_batch_size
    )
    calls = net.num_layers * (2 if net.bidirectional else 1)  # each direction runs on its own
    lstm_train = calls * train_width * step_ms(fits[True], net.hidden_size, data.batch_size)
    lstm_eval = calls * eval_width * step_ms(fits[False], net.hidden_size, data.eval_batch_size)
    traffic = 1e3 * params * TRAFFIC_BYTES / V100_BYTES_PER_S
    side_train, side_eval = python_side_ms(overrides, work, data_dir)
    train_s = train_batches * (lstm_train + side_train + traffic) / 1e3
    eval_s = eval_batches * (lstm_eval + side_eval) / 1e3
    return {
        "name": name, "sizes": sizes, "epochs": epochs, "vocab": vocab, "params": params,
        "train_batches": train_batches, "eval_batches": eval_batches,
        "train_width": train_width, "eval_width": eval_width,
        "lstm_train": lstm_train, "lstm_eval": lstm_eval, "traffic": traffic,
        "side_train": side_train, "side_eval": side_eval,
        "train_s": train_s, "eval_s": eval_s, "prepare_s": prepare_s,
        "total_s": train_s + eval_s + prepare_s,
    }  # fmt: skip


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def report(rows: list[dict], fit_errors: dict[bool, float]) -> str:
    lines = [
        "| run | reviews train / val / test, epochs | training batches: width, ms each "
        "(LSTM + Python side + parameter traffic) | evaluation batches: width, ms each "
        "(LSTM + Python side) | reading + tokenizing (this machine) | estimate, one V100 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["sizes"]
        lines.append(
            f"| {r['name']} | {s['train']:,} / {s['val']:,} / {s['test']:,}, {r['epochs']} "
            f"| {r['train_batches']:,} x {r['train_width']:.0f} tokens, {r['lstm_train']:.1f} + "
            f"{r['side_train']:.1f} + {r['traffic']:.1f} = {duration(r['train_s'])} "
            f"| {r['eval_batches']:,} x {r['eval_width']:.0f} tokens, {r['lstm_eval']:.1f} + "
            f"{r['side_eval']:.1f} = {duration(r['eval_s'])} | {duration(r['prepare_s'])} "
            f"| **{duration(r['total_s'])}** |"
        )
    notes = [
        f"{r['name']}: vocabulary {r['vocab']:,}, {r['params'] / 1e6:.1f}M parameters" for r in rows
    ]
    fit = (
        f"LSTM time step fit to DeepBench's V100 rows: largest error {fit_errors[True]:.0%} "
        f"(forward + backward), {fit_errors[False]:.0%} (forward)."
    )
    return "\n".join(lines) + "\n\n" + "; ".join(notes) + ".\n" + fit


def section(data_dir: Path, work: Path) -> str:
    """Every run of ``RUNS`` estimated, as a table with its notes."""
    fits, errors = {}, {}
    for training in (True, False):
        fits[training], errors[training] = fit_step_ms(training)
    rows = []
    for name in RUNS:
        folder = work / f"gpu-estimate-{len(rows)}"
        folder.mkdir()
        rows.append(estimate(name, fits, str(folder), data_dir))
    return report(rows, errors)
