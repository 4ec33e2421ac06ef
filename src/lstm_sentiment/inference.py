"""A trained checkpoint as a text -> probability function, shared by ``predict`` and ``export``;
and the one place a checkpoint is checked on load, for every entry point (train's ``ckpt_path``,
eval, predict, export): its archive's CRCs, no pickled code, our keys, a network that fits.

Everything comes from the checkpoint: the network from its hyperparameters, the text encoder
(text settings, vocabulary, ``max_len``) from the DataModule state saved beside them. No data
files, no Lightning.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from lstm_sentiment.data.batching import pad_batch
from lstm_sentiment.data.encoder import TextEncoder
from lstm_sentiment.data.vocab import PAD_ID, UNK_ID
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
    """The telling part of torch.load's many-line errors, without its advice to load unsafely."""
    for line in str(error).strip().splitlines():
        if "Unpickler error:" in line and line.partition("Unpickler error:")[2].strip():
            return line.partition("Unpickler error:")[2].strip()
    return _first_line(error)


@dataclass
class Predictor:
    """The network plus what turns text into its input, exactly as in training."""

    net: RNNClassifier
    encoder: TextEncoder
    device: torch.device

    def batch(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """``ids`` [B, T] and ``lengths`` [B], padded as the training batches are."""
        return pad_batch([(np.asarray(self.encoder.encode(t), np.int64), 0) for t in texts])

    def probabilities(self, texts: list[str]) -> list[float]:
        """The positive probability of each review."""
        return self.predict(texts)[0]

    @torch.inference_mode()
    def predict(self, texts: list[str]) -> tuple[list[float], list[int]]:
        """Each review's positive probability, and how many of the tokens the network read are
        in the vocabulary (0: the probability says nothing about the review's words)."""
        batch = self.batch(texts)
        logits = self.net(batch["ids"].to(self.device), batch["lengths"])
        known = ((batch["ids"] != PAD_ID) & (batch["ids"] != UNK_ID)).sum(dim=1)
        return torch.sigmoid(logits).tolist(), known.tolist()

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


def checkpoint_path(cfg: DictConfig) -> Path:
    """``cfg.ckpt_path`` of predict, export or eval, or a one-line error when none was given."""
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise CheckpointError(
            "no checkpoint given: add ckpt_path=PATH (a .ckpt file from a training run's "
            "checkpoints/ folder)"
        )
    return Path(cfg.ckpt_path)


def check_archive(path: Path) -> None:
    """``torch.save`` writes a zip archive, each member with its CRC-32; ``torch.load`` checks
    none of them, so a flipped byte inside the weights loads silently as a wrong weight. Reading
    every member once here (``ZipFile.testzip``) catches it (docs/benchmarks.md: its cost)."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # the first member whose CRC or header is wrong
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError):
        # no zip index at all: a text file, a truncated copy, another file type
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (corrupt, truncated, or another file type)"
        ) from None
    if damaged:
        raise CheckpointError(
            f"{path}: damaged checkpoint: {damaged} fails its CRC-32 check (bytes changed on disk "
            "or in a copy); copy it again, or use another checkpoint"
        )


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, checked to be an intact SentimentModule + ReviewDataModule checkpoint
    (archive CRCs, no pickled code, the keys and vocabulary ``train`` saves)."""
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a checkpoint file" if path.is_dir() else "no such checkpoint file"
        raise CheckpointError(f"{path}: {what}")
    check_archive(path)
    try:
        # weights_only: a checkpoint is data, and loading it must not run code
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: {_refusal(path, e)}") from None
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


def _refusal(path: Path, error: pickle.UnpicklingError) -> str:
    """Why ``weights_only`` refused the file: the Python objects it would have built or run."""
    try:
        blocked = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a pickle too broken to list: torch's own reason says more
        blocked = []
    if not blocked:
        return f"unreadable checkpoint ({_reason(error)})"
    return (
        f"refused: loading it would import or run {', '.join(blocked)}; a checkpoint of "
        "lstm_sentiment.train holds only tensors, numbers and strings, so this file was made "
        "or changed by something else (do not load it unless you trust its source)"
    )


def load_checkpoint(path: str | Path) -> tuple[RNNClassifier, TextEncoder, dict]:
    """The trained network, its text encoder and the checkpoint dict, each checked: what every
    entry point reads a checkpoint with before it does any other work."""
    ckpt = read_checkpoint(path)
    try:
        net = build_network(ckpt["hyper_parameters"], ckpt["state_dict"])
    except (TypeError, RuntimeError, KeyError) as e:
        raise CheckpointError(
            f"{path}: a checkpoint of another model type ({_first_line(e)})"
        ) from None
    try:
        encoder = TextEncoder.from_dict(ckpt[DATAMODULE_KEY])
    except (TypeError, ValueError, LookupError) as e:
        raise CheckpointError(f"{path}: unusable text settings ({_first_line(e)})") from None
    if len(encoder.vocab) != net.embedding.num_embeddings:
        raise CheckpointError(
            f"{path}: its vocabulary ({len(encoder.vocab)} words) does not fit its embedding "
            f"({net.embedding.num_embeddings} rows)"
        )
    return net, encoder, ckpt


def load_predictor(path: str | Path, device: str = "cpu") -> Predictor:
    """Rebuild the trained network and its text pipeline from a checkpoint alone."""
    net, encoder, _ = load_checkpoint(path)
    torch_device = pick_device(device)
    return Predictor(net.to(torch_device).eval(), encoder, torch_device)


def check_resume_checkpoint(
    path: str | Path, loaded: tuple[RNNClassifier, TextEncoder, dict], net: dict[str, Any]
) -> None:
    """Fail now, before any data is read, unless the checkpoint at ``path`` (``loaded`` by
    ``load_checkpoint``) holds weights that fit the network ``net`` (``model.net.*`` of the run
    that resumes from it) describes."""
    trained, _, ckpt = loaded
    saved = ckpt["hyper_parameters"]["net"]
    try:
        RNNClassifier(vocab_size=trained.embedding.num_embeddings, **net).load_state_dict(
            trained.state_dict()
        )
    except (TypeError, RuntimeError) as e:
        differ = [
            f"{k}={saved.get(k)} there, {v} here" for k, v in net.items() if saved.get(k) != v
        ]
        raise CheckpointError(
            f"{path}: trained with another network than model.net.* describes "
            f"({'; '.join(differ) or _first_line(e)}): resume with the settings it was trained "
            "with (its run's .hydra/config.yaml)"
        ) from None


def build_network(hparams: dict, state_dict: dict) -> RNNClassifier:
    """The trained network alone, without Lightning (whose import triples the CLI's start-up):
    ``SentimentModule`` keeps it as ``net``, built from ``hparams["net"]``."""
    net = RNNClassifier(vocab_size=hparams["vocab_size"], **hparams["net"])
    prefix = "net."
    net.load_state_dict(
        {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}
    )
    return net
