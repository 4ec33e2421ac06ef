"""A trained checkpoint as a text -> probability function, shared by ``predict`` and ``export``.

Everything comes from the checkpoint: the network from its hyperparameters, the text encoder
(text settings, vocabulary, ``max_len``) from the DataModule state saved beside them. No data
files, no Lightning.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lstm_sentiment.data.batching import pad_batch
from lstm_sentiment.data.encoder import TextEncoder
from lstm_sentiment.errors import UserError
from lstm_sentiment.models.components.rnn_classifier import RNNClassifier

DATAMODULE_KEY = "ReviewDataModule"  # where ReviewDataModule.state_dict() lands in a checkpoint


class InferenceError(UserError):
    """A problem the user can fix (checkpoint, input, option): reported as one line."""


class CheckpointError(InferenceError):
    """A checkpoint that is missing, unreadable, or not one of ours."""


class InputError(InferenceError):
    """Reviews that cannot be predicted: none at all, empty, or not UTF-8."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _reason(error: BaseException) -> str:
    """The telling line of torch.load's many-line errors (which object weights_only refused)."""
    lines = str(error).strip().splitlines()
    return next((line.strip() for line in lines if "Unpickler error" in line), _first_line(error))


@dataclass
class Predictor:
    """The network plus what turns text into its input, exactly as in training."""

    net: RNNClassifier
    encoder: TextEncoder
    device: torch.device

    def batch(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """``ids`` [B, T] and ``lengths`` [B], padded as the training batches are."""
        return pad_batch([(np.asarray(self.encoder.encode(t), np.int64), 0) for t in texts])

    @torch.inference_mode()
    def probabilities(self, texts: list[str]) -> list[float]:
        """The positive probability of each review."""
        batch = self.batch(texts)
        logits = self.net(batch["ids"].to(self.device), batch["lengths"])
        return torch.sigmoid(logits).tolist()

    @torch.inference_mode()
    def per_token(self, text: str) -> TokenView:
        """What each token of the review does to the prediction (``TokenView``)."""
        tokens = self.encoder.tokens(text)
        ids = torch.tensor([self.encoder.vocab.encode(tokens)], device=self.device)
        net, probability = self.net, self.probabilities([text])[0]
        if not net.bidirectional and net.pooling == ["last"]:
            values = torch.sigmoid(net.per_token_logits(ids)[0]).tolist()
            return TokenView(tokens, ids[0].tolist(), "prefix", values, probability)
        lengths = torch.tensor([len(tokens)], device=self.device)
        values = net.token_contributions(ids, lengths)[0].tolist()
        reading = "occlusion" if "last" in net.pooling else "share"
        return TokenView(tokens, ids[0].tolist(), reading, values, probability, net.fc.bias.item())


@dataclass
class TokenView:
    """Each token's part in a prediction, read one of three ways (``RNNClassifier`` docs):

    - ``prefix`` (one-directional network read at its last state): ``values[t]`` is the positive
      probability of the review cut after token ``t``; the last is the review's probability.
    - ``share`` (max, mean or attention pooling): ``values[t]`` is token ``t``'s share of the
      logit; ``bias + sum(values)`` is the logit exactly.
    - ``occlusion`` (a bidirectional network with ``last`` in its pooling): ``values[t]`` is what
      the logit loses when token ``t`` becomes unknown (plus its exact share of any other pooling).
    """

    tokens: list[str]
    ids: list[int]
    reading: str
    values: list[float]
    probability: float
    bias: float = 0.0


def pick_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` / ``cuda:N``, or ``auto`` (a GPU when there is one)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InferenceError(
            f"device={name!r} is not a device: use cpu, cuda, cuda:N or auto"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InferenceError(f"device={name} asked for, but torch sees no CUDA GPU: use device=cpu")
    return device


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, checked to be a SentimentModule + ReviewDataModule checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):  # what torch.save writes; a truncated copy loses its index
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (corrupt, truncated, or another file type)"
        )
    try:
        # weights_only: a checkpoint is data, and loading it must not run code
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle and EOF errors all mean the same thing here
        raise CheckpointError(f"{path}: unreadable checkpoint ({_reason(e)})") from None
    if not isinstance(ckpt, dict) or not {"state_dict", "hyper_parameters"} <= ckpt.keys():
        raise CheckpointError(
            f"{path}: not a Lightning checkpoint of lstm_sentiment.train (no hyper_parameters "
            "and state_dict; a plain state dict or another program's file?)"
        )
    if "vocab" not in (ckpt.get(DATAMODULE_KEY) or {}):
        raise CheckpointError(
            f"{path}: holds no vocabulary ({DATAMODULE_KEY} state): a checkpoint of another "
            "model type, or saved before training started"
        )
    return ckpt


def load_predictor(path: str | Path, device: str = "cpu") -> Predictor:
    """Rebuild the trained network and its text pipeline from a checkpoint alone."""
    ckpt = read_checkpoint(path)
    saved = ckpt[DATAMODULE_KEY]
    try:
        net = build_network(ckpt["hyper_parameters"], ckpt["state_dict"])
    except (TypeError, RuntimeError, KeyError) as e:
        raise CheckpointError(
            f"{path}: a checkpoint of another model type ({_first_line(e)})"
        ) from None
    try:
        encoder = TextEncoder.from_dict(saved)
    except (TypeError, ValueError, LookupError) as e:
        raise CheckpointError(f"{path}: unusable text settings ({_first_line(e)})") from None
    if len(encoder.vocab) != net.embedding.num_embeddings:
        raise CheckpointError(
            f"{path}: its vocabulary ({len(encoder.vocab)} words) does not fit its embedding "
            f"({net.embedding.num_embeddings} rows)"
        )
    torch_device = pick_device(device)
    return Predictor(net.to(torch_device).eval(), encoder, torch_device)


def build_network(hparams: dict, state_dict: dict) -> RNNClassifier:
    """The trained network alone, without Lightning (whose import triples the CLI's start-up):
    ``SentimentModule`` keeps it as ``net``, built from ``hparams["net"]``."""
    net = RNNClassifier(vocab_size=hparams["vocab_size"], **hparams["net"])
    prefix = "net."
    net.load_state_dict(
        {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}
    )
    return net
