"""Export a checkpoint for serving: ``python -m lstm_sentiment.export ckpt_path=PATH format=onnx``.

Writes ``<name>.onnx`` (ONNX Runtime) or ``<name>.torchscript.pt`` (``torch.jit.load``), both taking
``ids`` int64 [B, T] and ``lengths`` int64 [B] and returning the positive probability [B], with
``<name>.vocab.json`` beside it: the vocabulary, text settings and ``max_len`` that turn a review
into ``ids``. It then checks the file against the PyTorch model on a batch of real reviews.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import warnings
import zipfile
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from lstm_sentiment.config import CONFIG_DIR
from lstm_sentiment.data.files import ReviewFileError, find_review_file
from lstm_sentiment.data.reviews import read_reviews
from lstm_sentiment.data.vocab import PAD_ID, UNK_ID
from lstm_sentiment.errors import user_errors_exit
from lstm_sentiment.inference import InferenceError, Predictor, load_predictor
from lstm_sentiment.models.components.rnn_classifier import RNNClassifier

log = logging.getLogger("lstm_sentiment.export")

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
# used when no review file is at hand: lengths differ, so padding and the gather are exercised
FALLBACK_REVIEWS = [
    "Great start: worked perfectly out of the box... but it broke after a week. Avoid.",
    "Five stars!",
    "The worst purchase I've made this year; the seller never answered my emails.",
]


class ExportError(InferenceError):
    """An export that cannot be made, or whose file disagrees with the PyTorch model."""


class ProbabilityModel(nn.Module):
    """``(ids, lengths) -> sigmoid(logit)``: the network without packing, in a form tracing can
    export.

    Packed sequences do not export, so this runs the network's ``pack=False`` path: the padded
    batch, each review's output gathered at ``length - 1``, and for a bidirectional network the
    backward direction run on each review reversed within its length. Both are exact (a test
    compares them with the packed model), and both keep batch and time sizes dynamic.
    """

    def __init__(self, net: RNNClassifier):
        super().__init__()
        if getattr(net, "cell", "torch") != "torch":
            raise ExportError(
                f"cell={net.cell} does not export: tracing would unroll its Python time loop to "
                "the example's length; train with model.net.cell=torch"
            )
        self.net = copy.copy(net)  # the same weights; only this copy runs unpacked
        self.net.pack = False

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(ids, lengths))


def export_onnx(model: ProbabilityModel, example: tuple[torch.Tensor, ...], path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=["ids", "lengths"],
            output_names=["probability"],
            dynamic_axes={"ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
            opset_version=17,
            # the TorchScript-based exporter: the dynamo one needs onnxscript, and exports
            # nn.LSTM no better
            dynamo=False,
        )


def export_torchscript(
    model: ProbabilityModel, example: tuple[torch.Tensor, ...], path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example)
    traced.save(str(path))


def load_exported(path: str | Path) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The exported file as ``(ids, lengths) -> probabilities``, with no Lightning involved."""
    path = Path(path)
    if not zipfile.is_zipfile(path):  # TorchScript files are zip archives, ONNX ones protobuf
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError(
                "running ONNX needs onnxruntime: pip install 'lstm-sentiment[export]'"
            ) from None

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda ids, lengths: session.run(None, {"ids": ids, "lengths": lengths})[0]
    module = torch.jit.load(str(path), map_location="cpu")

    def run(ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(ids), torch.from_numpy(lengths)).numpy()

    return run


def vocab_path(path: Path) -> Path:
    """``model.onnx`` / ``model.torchscript.pt`` -> ``model.vocab.json``."""
    name = path.name
    for suffix in (*FORMATS.values(), path.suffix):
        if suffix and name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + ".vocab.json")


def write_vocab(predictor: Predictor, path: Path) -> None:
    """The checkpoint's text encoder as it saved it (``TextEncoder.from_dict`` reads it back),
    plus what a server needs to know about the model's inputs and output."""
    info = {
        **predictor.encoder.to_dict(),
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "inputs": {"ids": "int64 [batch, time], right-padded", "lengths": "int64 [batch]"},
        "output": {"probability": "float32 [batch], positive sentiment"},
    }
    path.write_text(json.dumps(info, ensure_ascii=False))


def check_reviews(cfg: DictConfig) -> list[str]:
    """Real reviews for the agreement check: ``check_file``, else the data's test file."""
    path = cfg.get("check_file")
    if not path:
        try:
            path = find_review_file(cfg.paths.data_dir, "test")
        except ReviewFileError:
            log.warning(
                "no review file found: checking on %d example reviews", len(FALLBACK_REVIEWS)
            )
            return FALLBACK_REVIEWS
    return [text for _, text in islice(read_reviews(path), cfg.check_reviews)]


def max_difference(path: Path, predictor: Predictor, texts: list[str]) -> float:
    """Largest |exported - PyTorch| probability over ``texts``, in one padded batch."""
    batch = predictor.batch(texts)
    exported = load_exported(path)(batch["ids"].numpy(), batch["lengths"].numpy())
    return float(np.abs(exported - np.asarray(predictor.probabilities(texts))).max())


def export(cfg: DictConfig) -> Path:
    """Write the exported model and its vocabulary; fail unless it matches PyTorch."""
    if cfg.format not in FORMATS:
        raise ExportError(f"format must be one of {sorted(FORMATS)}, got {cfg.format!r}")
    predictor = load_predictor(cfg.ckpt_path, "cpu")
    ckpt = Path(cfg.ckpt_path)
    path = Path(cfg.output or ckpt.with_name(ckpt.stem + FORMATS[cfg.format]))
    batch = predictor.batch(FALLBACK_REVIEWS)
    example = (batch["ids"], batch["lengths"])
    model = ProbabilityModel(predictor.net).eval()
    (export_onnx if cfg.format == "onnx" else export_torchscript)(model, example, path)
    write_vocab(predictor, vocab_path(path))
    texts = check_reviews(cfg)
    diff = max_difference(path, predictor, texts)
    if not diff <= cfg.tolerance:
        path.unlink()  # a file that disagrees must not be served by mistake
        raise ExportError(
            f"{path}: exported probabilities differ from PyTorch by {diff:.2e} "
            f"(> tolerance={cfg.tolerance}) on {len(texts)} reviews"
        )
    log.info("wrote %s and %s", path, vocab_path(path))
    log.info("max |%s - PyTorch| over %d reviews: %.2e", cfg.format, len(texts), diff)
    return path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with user_errors_exit():
        export(cfg)


if __name__ == "__main__":
    main()
