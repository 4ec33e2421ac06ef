"""CPU prediction throughput, PyTorch eager vs ONNX Runtime, printed as a Markdown table.

Both columns are end to end: raw review text -> tokens -> padded ids -> probabilities, on real
reviews from the shared sample's test file, in order (no length sorting, as the CLI does it).
PyTorch runs packed sequences; ONNX Runtime runs the padded batch (packing does not export).

Usage: python benchmarks/bench_predict.py [--ckpt PATH] [--reviews 1024] [--threads 1]
Without --ckpt it first trains a model for one epoch on the shared sample (a minute or so).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import onnxruntime as ort
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from lstm_sentiment.config import CONFIG_DIR
from lstm_sentiment.data.files import SAMPLE_DIR, find_review_file
from lstm_sentiment.data.reviews import read_reviews
from lstm_sentiment.export import ProbabilityModel, export_onnx
from lstm_sentiment.inference import Predictor, load_predictor

BATCH_SIZES = (1, 32, 256)


def train_quickly(folder: Path) -> Path:
    """One epoch of the default model on the embedded sample; its best checkpoint."""
    from lstm_sentiment.train import train

    overrides = [
        f"paths.data_dir={SAMPLE_DIR}",
        f"paths.cache_dir={folder / 'cache'}",
        f"paths.log_dir={folder / 'logs'}",
        "trainer.max_epochs=1",
        "~logger",
        "callbacks.lr_monitor=null",
        "callbacks.rich_progress_bar=null",
        "data.progress=false",
        "test=false",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder / "out")
    _, trainer = train(cfg)
    return Path(trainer.checkpoint_callback.best_model_path)


def onnx_session(predictor: Predictor, threads: int) -> ort.InferenceSession:
    batch = predictor.batch(["a short one", "and a slightly longer review"])
    onnx = export_onnx(ProbabilityModel(predictor.net).eval(), (batch["ids"], batch["lengths"]))
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    return ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])


def reviews_per_second(run: Callable[[list[str]], object], texts: list[str], batch: int) -> float:
    """Median over 3 passes (after a warm-up pass) of the whole list in chunks of ``batch``."""
    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    rates = []
    for attempt in range(4):
        start = time.perf_counter()
        for chunk in chunks:
            run(chunk)
        if attempt:
            rates.append(len(texts) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, help="a checkpoint; default: train one for 1 epoch")
    parser.add_argument("--reviews", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt or train_quickly(Path(tmp))
        predictor = load_predictor(ckpt, "cpu")
        session = onnx_session(predictor, args.threads)
        net = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]["net"]
    test_file = find_review_file(SAMPLE_DIR, "test")
    texts = [text for _, text in islice(read_reviews(test_file), args.reviews)]

    def onnx_run(chunk: list[str]):
        batch = predictor.batch(chunk)
        feeds = {"ids": batch["ids"].numpy(), "lengths": batch["lengths"].numpy()}
        return session.run(None, feeds)[0]

    print(
        f"{len(texts)} reviews of {test_file}, {args.threads} thread(s), "
        f"{net['rnn_type']} {net['num_layers']}x{net['hidden_size']}, embedding "
        f"{net['embedding_dim']}, vocabulary {len(predictor.encoder.vocab):,}, "
        f"max_len {predictor.encoder.max_len}\n"
    )
    print("| batch size | text -> ids only | PyTorch eager | ONNX Runtime | ONNX / PyTorch |")
    print("|---:|---:|---:|---:|---:|")
    for batch in BATCH_SIZES:
        tokenize = reviews_per_second(predictor.batch, texts, batch)
        eager = reviews_per_second(predictor.probabilities, texts, batch)
        onnx = reviews_per_second(onnx_run, texts, batch)
        print(f"| {batch} | {tokenize:,.0f} | {eager:,.0f} | {onnx:,.0f} | {onnx / eager:.2f}x |")


if __name__ == "__main__":
    main()
