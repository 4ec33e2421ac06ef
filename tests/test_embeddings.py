"""Pretrained word vectors: both file formats, matching rules, errors, and training with them."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from lstm_sentiment.data.vectors import EmbeddingsError, load_vectors, read_vectors
from lstm_sentiment.data.vocab import PAD, UNK, Vocabulary
from lstm_sentiment.models.sentiment_module import SentimentModule

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = Vocabulary([PAD, UNK, "great", "terrible", "book", "the"])


def vec(seed: int, dim: int = 4) -> list[float]:
    return [round(seed + 0.1 * i, 2) for i in range(dim)]


def line(word: str, values: list[float]) -> str:
    return " ".join([word, *map(str, values)]) + "\n"


def test_fasttext_vec_with_header_and_cased_words(tmp_path):
    path = tmp_path / "wiki.vec"
    path.write_text(
        "5 4\n"
        + line("Great", vec(1))  # only a cased form: serves "great"
        + line("Book", vec(2))
        + line("book", vec(3))  # the exact form wins over "Book", whatever the order
        + line("missing", vec(4))
        + line(PAD, vec(5))  # the pad row is never filled
    )
    found, dim = read_vectors(path, VOCAB)
    assert dim == 4
    assert found == {VOCAB.stoi["great"]: vec(1), VOCAB.stoi["book"]: vec(3)}


def test_glove_txt_without_header(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text(line("the", vec(1, 3)) + line(". . .", vec(2, 3)) + line("terrible", vec(3, 3)))
    found, dim = read_vectors(path, VOCAB)
    assert dim == 3
    assert found == {VOCAB.stoi["the"]: vec(1, 3), VOCAB.stoi["terrible"]: vec(3, 3)}


def test_load_vectors_fills_known_rows_only(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text(line("great", vec(1)) + line("the", vec(2)))
    emb = nn.Embedding(len(VOCAB), 4, padding_idx=0)
    before = emb.weight.detach().clone()
    assert load_vectors(emb, VOCAB, path) == 2
    assert emb.weight[VOCAB.stoi["great"]].tolist() == pytest.approx(vec(1))
    assert emb.weight[VOCAB.stoi["the"]].tolist() == pytest.approx(vec(2))
    untouched = [0, 1, VOCAB.stoi["terrible"], VOCAB.stoi["book"]]
    assert torch.equal(emb.weight[untouched], before[untouched])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (line("great", vec(1, 8)), "8-dimensional vectors but model.net.embedding_dim=4"),
        (line("great", vec(1)) + "the 0.1 0.2\n", "line 2 has 2 values, not 4"),
        (line("great", ["0.1", "x", "0.3", "0.4"]), "line 1 holds a non-number"),
        ("", "holds no vectors"),
    ],
)
def test_bad_vector_files(tmp_path, content, message):
    path = tmp_path / "v.txt"
    path.write_text(content)
    with pytest.raises(EmbeddingsError, match=message):
        load_vectors(nn.Embedding(len(VOCAB), 4), VOCAB, path)


def test_missing_file(tmp_path):
    with pytest.raises(EmbeddingsError, match="no such word-vector file"):
        read_vectors(tmp_path / "nope.vec", VOCAB)


@pytest.mark.parametrize("freeze", [True, False])
def test_training_starts_from_the_vectors(train_cfg, tmp_path, caplog, freeze):
    from lstm_sentiment.train import train

    words = {"great": vec(1, 16), "terrible": vec(2, 16), "Book": vec(3, 16), "zebra": vec(4, 16)}
    path = tmp_path / "tiny.vec"
    path.write_text(f"{len(words)} 16\n" + "".join(line(w, v) for w, v in words.items()))
    cfg = train_cfg(
        f"model.embeddings.path={path}",
        f"model.embeddings.freeze={str(freeze).lower()}",
        "model.net.embedding_dim=16",
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=4",
        "test=false",
        "~logger",
        "callbacks.early_stopping=null",
        "callbacks.lr_monitor=null",
    )
    with caplog.at_level(logging.INFO):
        _, trainer = train(cfg)
    vocab = trainer.datamodule.vocab
    assert f"3 of {len(vocab)} vocabulary words found in {path}" in caplog.text

    model = SentimentModule.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    weight = model.net.embedding.weight
    assert weight.requires_grad is not freeze  # freezing survives the reload
    rows = [vocab.stoi[w] for w in ("great", "terrible", "book")]
    loaded = torch.tensor([words["great"], words["terrible"], words["Book"]])
    if freeze:
        assert torch.equal(weight[rows].detach(), loaded)
    else:
        assert not torch.allclose(weight[rows].detach(), loaded)  # trained away from them
