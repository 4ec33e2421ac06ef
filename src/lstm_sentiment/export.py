"""Export a checkpoint for serving: ``python -m lstm_sentiment.export ckpt_path=PATH format=onnx``.

Writes ``<name>.onnx`` (ONNX Runtime) or ``<name>.torchscript.pt`` (``torch.jit.load``), both taking
``ids`` int64 [B, T] and ``lengths`` int64 [B] and returning the positive probability [B], with
``<name>.vocab.json`` beside it: the vocabulary, text settings and ``max_len`` that turn a review
into ``ids``. The model is exported in memory and checked against the PyTorch model on a batch of
real reviews before either file is written; both are then written whole or not at all
(``atomic_output``), and never over the checkpoint or the review file of the check.
"""

from __future__ import annotations

import copy
import io
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

from lstm_sentiment.atomic_output import AtomicOutput, refuse_overwrite
from lstm_sentiment.config import CONFIG_DIR
from lstm_sentiment.data.files import ReviewFileError, find_review_file
from lstm_sentiment.data.reviews import read_reviews
from lstm_sentiment.data.vocab import PAD_ID, UNK_ID
from lstm_sentiment.errors import user_errors_exit
from lstm_sentiment.inference import InferenceError, Predictor, checkpoint_path, load_predictor
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


def export_onnx(model: ProbabilityModel, example: tuple[torch.Tensor, ...]) -> bytes:
    """The ONNX file's bytes (made in memory: nothing half-written if the disk then fills up)."""
    onnx = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(
            model,
            example,
            onnx,
            input_names=["ids", "lengths"],
            output_names=["probability"],
            dynamic_axes={"ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
            opset_version=17,
            # the TorchScript-based exporter: the dynamo one needs onnxscript, and exports
            # nn.LSTM no better
            dynamo=False,
        )
    return onnx.getvalue()


def export_torchscript(model: ProbabilityModel, example: tuple[torch.Tensor, ...]) -> bytes:
    """The TorchScript file's bytes. Made in memory: torch's own file writer aborts the whole
    process (a C++ exception, no Python error) when the disk is full."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example)
    script = io.BytesIO()
    torch.jit.save(traced, script)
    return script.getvalue()


def load_exported(exported: str | Path | bytes) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """An exported file (its path, or its bytes) as ``(ids, lengths) -> probabilities``, with no
    Lightning involved."""
    blob = exported if isinstance(exported, bytes) else Path(exported).read_bytes()
    if not zipfile.is_zipfile(io.BytesIO(blob)):  # TorchScript files are zip archives, ONNX not
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError(
                "running ONNX needs onnxruntime: pip install 'lstm-sentiment[export]'"
            ) from None

        session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        return lambda ids, lengths: session.run(None, {"ids": ids, "lengths": lengths})[0]
    module = torch.jit.load(io.BytesIO(blob), map_location="cpu")

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


def vocab_json(predictor: Predictor) -> str:
    """The checkpoint's text encoder as it saved it (``TextEncoder.from_dict`` reads it back),
    plus what a server needs to know about the model's inputs and output."""
    info = {
        **predictor.encoder.to_dict(),
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "inputs": {"ids": "int64 [batch, time], right-padded", "lengths": "int64 [batch]"},
        "output": {"probability": "float32 [batch], positive sentiment"},
    }
    return json.dumps(info, ensure_ascii=False)


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


def max_difference(exported: bytes, predictor: Predictor, texts: list[str]) -> float:
    """Largest |exported - PyTorch| probability over ``texts``, in one padded batch."""
    batch = predictor.batch(texts)
    probabilities = load_exported(exported)(batch["ids"].numpy(), batch["lengths"].numpy())
    return float(np.abs(probabilities - np.asarray(predictor.probabilities(texts))).max())


def export(cfg: DictConfig) -> Path:
    """Write the exported model and its vocabulary; fail, writing nothing, unless it matches
    PyTorch."""
    if cfg.format not in FORMATS:
        raise ExportError(f"format must be one of {sorted(FORMATS)}, got {cfg.format!r}")
    ckpt = checkpoint_path(cfg)
    path = Path(cfg.output or ckpt.with_name(ckpt.stem + FORMATS[cfg.format]))
    inputs = {"checkpoint": ckpt, "check_file": cfg.get("check_file")}
    refuse_overwrite(path, inputs)
    refuse_overwrite(vocab_path(path), inputs)
    # temporary files now, so an output folder it cannot write fails before the work
    with AtomicOutput(path, binary=True) as model_file, AtomicOutput(vocab_path(path)) as vocab:
        predictor = load_predictor(ckpt, "cpu")
        batch = predictor.batch(FALLBACK_REVIEWS)
        example = (batch["ids"], batch["lengths"])
        model = ProbabilityModel(predictor.net).eval()
        exported = (export_onnx if cfg.format == "onnx" else export_torchscript)(model, example)
        texts = check_reviews(cfg)
        diff = max_difference(exported, predictor, texts)
        if not diff <= cfg.tolerance:  # a model that disagrees must not be served by mistake
            raise ExportError(
                f"{path}: exported probabilities differ from PyTorch by {diff:.2e} "
                f"(> tolerance={cfg.tolerance}) on {len(texts)} reviews; nothing was written"
            )
        model_file.write(exported)
        vocab.write(vocab_json(predictor))
        model_file.flush()  # both on disk before either is renamed into place
        vocab.flush()
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
