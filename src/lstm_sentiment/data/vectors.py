"""Pretrained word vectors (GloVe ``.txt``, fastText ``.vec``, plain or ``.gz``) for the embedding.

Both formats are ``word v1 v2 ... vD`` per line; fastText adds a ``count dim`` header line.
Only the vocabulary's words are parsed into floats, so a multi-GB file costs one pass of string
splitting. Rows of words the file lacks keep their random initialization; the pad row stays zero.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from lstm_sentiment.data.vocab import PAD_ID, Vocabulary
from lstm_sentiment.errors import UserError


class EmbeddingsError(UserError):
    """A vector file that cannot initialize the embedding: missing, malformed, wrong size."""


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    # errors="replace": some published files hold a few broken words; they just never match
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        yield from enumerate(f, 1)


def read_vectors(path: str | Path, vocab: Vocabulary) -> tuple[dict[int, list[float]], int]:
    """The vectors of the vocabulary's words, as ``{token id: vector}``, and the file's dimension.

    An exact match wins; otherwise a word matches its lowercased form, since our pipeline
    lowercases and fastText's vectors are cased ("Great" then serves for "great").
    """
    path = Path(path)
    if not path.is_file():
        raise EmbeddingsError(f"{path}: no such word-vector file (model.embeddings.path)")
    found: dict[int, list[float]] = {}
    exact: set[int] = set()
    dim = None
    for lineno, line in _lines(path):
        parts = line.rstrip().split(" ")
        if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            dim = int(parts[1])  # the fastText header: word count and dimension
            continue
        if len(parts) < 2:
            continue  # a blank line
        dim = dim or len(parts) - 1
        if len(parts) != dim + 1:
            # GloVe 840B holds a few "words" with spaces: the vector is always the last dim fields
            if len(parts) < dim + 1:
                raise EmbeddingsError(
                    f"{path}: line {lineno} has {len(parts) - 1} values, not {dim}"
                )
            parts = [" ".join(parts[:-dim]), *parts[-dim:]]
        word = parts[0]
        idx = vocab.stoi.get(word)
        if idx is not None:
            exact.add(idx)
        else:
            idx = vocab.stoi.get(word.lower())
            if idx is None or idx in exact or idx in found:
                continue
        try:
            found[idx] = [float(v) for v in parts[1:]]
        except ValueError:
            raise EmbeddingsError(f"{path}: line {lineno} holds a non-number") from None
    if dim is None:
        raise EmbeddingsError(f"{path}: the file holds no vectors")
    found.pop(PAD_ID, None)
    return found, dim


@torch.no_grad()
def load_vectors(embedding: nn.Embedding, vocab: Vocabulary, path: str | Path) -> int:
    """Copy the file's vectors into the rows of known words; return how many words were found."""
    if embedding.num_embeddings != len(vocab):
        raise EmbeddingsError(
            f"the embedding has {embedding.num_embeddings} rows, the vocabulary {len(vocab)} words"
        )
    found, dim = read_vectors(path, vocab)
    if dim != embedding.embedding_dim:
        raise EmbeddingsError(
            f"{path} holds {dim}-dimensional vectors but model.net.embedding_dim="
            f"{embedding.embedding_dim}: set model.net.embedding_dim={dim}"
        )
    if found:
        rows = torch.tensor(list(found), dtype=torch.long)
        embedding.weight[rows] = torch.tensor(list(found.values()), dtype=embedding.weight.dtype)
    return len(found)
