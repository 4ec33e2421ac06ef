"""Reading, cleaning, tokenizing, vocabulary and splits; the recipe's data faults stay fixed."""

from __future__ import annotations

import bz2
import gzip
import io
from collections import Counter

import numpy as np
import pytest
from nltk.tokenize import wordpunct_tokenize

from lstm_sentiment.data.files import SAMPLE_DIR, find_review_file
from lstm_sentiment.data.reviews import (
    ReadStats,
    ReviewFileError,
    read_input_file,
    read_lines,
    read_reviews,
)
from lstm_sentiment.data.text import PUNKT_HELP, TokenizerDataMissing, require_punkt
from lstm_sentiment.data.vocab import PAD_ID, UNK_ID, Vocabulary

from helpers import data_module, text_pipeline, write_fasttext

LINES = "__label__2 Great CD: My lovely Pat has one of the GREAT voices.\n__label__1 Bad: broke.\n"


@pytest.mark.parametrize("opener", [open, bz2.open, gzip.open], ids=["plain", "bz2", "gz"])
def test_read_fasttext_plain_and_compressed(tmp_path, opener):
    suffix = {open: "", bz2.open: ".bz2", gzip.open: ".gz"}[opener]
    path = tmp_path / f"train.ft.txt{suffix}"
    with opener(path, "wb") as f:
        f.write(LINES.encode())
    assert list(read_reviews(path)) == [
        (1, "Great CD: My lovely Pat has one of the GREAT voices."),
        (0, "Bad: broke."),
    ]


def test_read_csv_with_quoted_commas_and_newlines(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(
        '"2","Nice, really","line one\nline two, with comma"\n"1","Meh","bad\\nworse"\n'
    )
    assert list(read_reviews(path)) == [
        (1, "Nice, really: line one\nline two, with comma"),
        (0, "Meh: bad worse"),
    ]


def test_bad_lines_are_skipped_counted_and_limited(tmp_path):
    path = tmp_path / "train.ft.txt"
    path.write_bytes(LINES.encode() + b"no label here\n__label__3 what\n__label__1 \xff\xfe bad\n")
    stats = ReadStats(str(path))
    assert len(list(read_reviews(path, stats=stats))) == 2
    assert (stats.records, stats.bad) == (5, 3)
    assert [n for n, _ in stats.examples] == [3, 4, 5]
    with pytest.raises(
        ReviewFileError, match=r"train.ft.txt: skipped 3 of 5 .*line 3: no __label__"
    ):
        stats.check(max_bad_fraction=0.5)
    stats.check(max_bad_fraction=0.6)


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(ReviewFileError, match="no such file.*make data"):
        list(read_reviews(tmp_path / "nope.ft.txt"))


def test_url_pattern_keeps_words_glued_to_a_full_stop():
    clean = text_pipeline().clean
    # the recipe's pattern turned "product.but" and "mr.bob" into <url>
    assert clean("Great product.but mr.bob said no") == "great product.but mr.bob said no"
    assert "<url>" in clean("see http://example.com/x?y=1 now")
    assert "<url>" in clean("bought at www.shop.de")
    assert "<url>" in clean("from amazon.com today")


def test_cleaning_lowercases_and_zeroes_digits():
    assert text_pipeline().clean("Bought 2 in 2019") == "bought 0 in 0000"
    raw = text_pipeline(lowercase=False, replace_digits=False)
    assert raw.clean("Bought 2") == "Bought 2"


def test_url_stays_one_token():
    assert text_pipeline()("see www.a.com now") == ["see", "<url>", "now"]


def test_default_tokenizer_needs_no_download_and_matches_nltk():
    text = "It's great -- really! (5 stars) don't buy... ok?"
    pipe = text_pipeline()
    assert pipe.tokenize(text) == wordpunct_tokenize(text)
    assert text_pipeline(tokenizer="treebank")("great. but it broke") == [
        "great",
        ".",
        "but",
        "it",
        "broke",
    ]


def test_punkt_tokenizer_fails_with_install_hint():
    try:
        require_punkt()
        pytest.skip("punkt_tab is installed here; the failure path cannot be shown")
    except TokenizerDataMissing:
        pass
    with pytest.raises(TokenizerDataMissing, match="nltk.downloader punkt_tab"):
        text_pipeline(tokenizer="punkt")
    assert "treebank" in PUNKT_HELP


def test_vocabulary_min_freq_specials_and_unknowns():
    vocab = Vocabulary.from_counts(Counter("a a a b b c".split()), min_freq=2)
    assert vocab.itos == ["_PAD", "_UNK", "a", "b"]
    # the recipe mapped unknown words to 0, the pad id; they must map to _UNK
    assert vocab.encode(["a", "zzz", "c"]) == [2, UNK_ID, UNK_ID]
    assert UNK_ID != PAD_ID
    assert len(Vocabulary.from_counts(Counter("a a b b c c".split()), min_freq=2, max_size=3)) == 3


def _datamodule(data_dir, tmp_path, **kw):
    kw = {"preprocess_workers": 1, "progress": False, "batch_size": 16, **kw}
    return data_module(data_dir, tmp_path / "cache", **kw)


def test_vocabulary_counts_only_training_reviews(tmp_path):
    write_fasttext(tmp_path / "train.ft.txt", 50, seed=0)
    (tmp_path / "test.ft.txt").write_text("__label__1 zebra zebra zebra zebra\n")
    dm = _datamodule(tmp_path, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    assert "zebra" not in dm.vocab
    assert dm.datasets["test"][0][0].tolist() == [UNK_ID] * 4


def test_validation_is_held_out_from_train_not_test(tiny_data_dir, tmp_path):
    dm = _datamodule(tiny_data_dir, tmp_path)
    dm.setup("fit")
    train, val, test = (dm.datasets[s] for s in ("train", "val", "test"))
    assert val.split is train.split and test.split is not train.split
    assert not set(train.indices) & set(val.indices)
    assert len(val) == 60 and len(train) == 540 and len(test) == 200
    ref = _datamodule(tiny_data_dir, tmp_path, val_source="test_half")
    ref.setup("fit")
    assert len(ref.datasets["val"]) == 100 and len(ref.datasets["test"]) == 100
    assert ref.datasets["val"].split is ref.datasets["test"].split


def test_batches_are_padded_to_their_longest_review(tiny_data_dir, tmp_path):
    dm = _datamodule(tiny_data_dir, tmp_path, max_len=12)
    dm.setup("fit")
    for batch in dm.train_dataloader():
        assert batch["ids"].shape[1] == int(batch["lengths"].max()) <= 12
        for row, n in zip(batch["ids"], batch["lengths"], strict=True):
            assert (row[:n] != PAD_ID).all() and (row[n:] == PAD_ID).all()


def test_the_embedded_sample_reads_and_encodes(tmp_path):
    labels = np.array([label for label, _ in read_reviews(find_review_file(SAMPLE_DIR, "train"))])
    assert len(labels) == 9459 and labels.sum() == 4755  # the sample's README counts
    dm = _datamodule(SAMPLE_DIR, tmp_path, preprocess_workers=2)
    dm.setup("fit")
    assert len(dm.datasets["test"]) == 1984
    assert 10_000 < len(dm.vocab) < 30_000
    ids, label = dm.datasets["test"][0]
    assert 0 < len(ids) <= 200 and ids.dtype == np.int32 and label in (0, 1)


# -- what was skipped is always said (issue 14 row 7), a byte-order mark is no review (row 8) --


def _log_lines(caplog, folder) -> list[tuple[str, str]]:
    """The DataModule's lines that name ``folder`` (the cache's own build line aside)."""
    return [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "lstm_sentiment.data.datamodule" and str(folder) in r.getMessage()
    ]


def test_every_file_read_gets_a_log_line_saying_what_was_skipped(tmp_path, caplog):
    """Bad lines under data.max_bad_fraction were skipped without a word; now each file read
    gets one line, with counts and the first bad line numbers, also when the run succeeds."""
    good = [f"__label__{1 + i % 2} review {i}: fine words here\n" for i in range(400)]
    bad = [
        "__label__3 unknown label: text\n",
        "__label__2 caf\xe9 in latin-1\n",  # written as Latin-1 below
        "__label__1 " + "word " * 420_000 + "\n",  # a 2 MB line
        "label,title,text\n",  # a CSV header in a fastText file
    ]
    lines = good[:100] + bad[:1] + good[100:200] + bad[1:] + good[200:]
    (tmp_path / "train.ft.txt").write_bytes(
        "".join(lines).encode("latin-1") + "__label__1 cut mid-ch\xe9".encode()[:-1]
    )
    test = [f"__label__{1 + i % 2} test review {i}: fine words\n" for i in range(99)]
    (tmp_path / "test.ft.txt").write_text("".join(["__label__9 odd\n", *test]))
    dm = _datamodule(tmp_path, tmp_path, max_bad_fraction=0.02)
    for build in ("cold", "warm"):  # the warm run reads the counts from the cache
        caplog.clear()
        with caplog.at_level("INFO"):
            dm.prepare_data()
            dm.log_data_used()
        folder, (train_level, train), (test_level, test_line) = _log_lines(caplog, tmp_path)
        assert folder == ("INFO", f"data folder: {tmp_path} (data.data_dir)")
        assert train_level == test_level == "WARNING", build
        assert train.startswith(f"{tmp_path / 'train.ft.txt'}: 400 reviews; skipped 5 of 405 (")
        for problem in (
            "line 101: unknown label '__label__3'",
            "line 202: invalid UTF-8 at byte 14",
            "line 203: review of 2,099,999 characters",
            "line 204: no __label__ prefix",
            "line 405: invalid UTF-8",  # the file ends mid-character
        ):
            assert problem in train, problem
        assert "test.ft.txt: 99 reviews; skipped 1 of 100 (line 1: unknown label" in test_line
    dm.setup("fit")
    assert len(dm.datasets["train"]) + len(dm.datasets["val"]) == 400


def test_a_clean_file_is_said_to_be_clean(tiny_data_dir, tmp_path, caplog):
    dm = _datamodule(tiny_data_dir, tmp_path)
    dm.prepare_data()
    with caplog.at_level("INFO"):
        dm.log_data_used()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == f"data folder: {tiny_data_dir} (data.data_dir)"
    assert messages[1] == f"{tiny_data_dir / 'train.ft.txt'}: 600 reviews, none skipped"
    assert messages[2] == f"{tiny_data_dir / 'test.ft.txt'}: 200 reviews, none skipped"


BOM = "\ufeff"


@pytest.mark.parametrize(
    "name, text",
    [
        ("train.ft.txt", f"{BOM}__label__2 first: kept\n__label__1 second: kept\n"),
        ("train.ft.txt.bz2", f"{BOM}__label__2 first: kept\n__label__1 second: kept\n"),
        ("train.csv", f'{BOM}"2","first","kept"\n"1","second","kept"\n'),
        ("train.ft.txt", "__label__2\tfirst: kept\n__label__1 \t second: kept\n"),  # tabs
    ],
)
def test_a_byte_order_mark_or_a_tab_loses_no_review(tmp_path, name, text):
    path = tmp_path / name
    with (bz2.open if name.endswith(".bz2") else open)(path, "wb") as f:
        f.write(text.encode("utf-8"))
    stats = ReadStats(str(path))
    assert [label for label, _ in read_reviews(path, stats=stats)] == [1, 0]
    assert stats.bad == 0


def test_predict_reads_a_file_with_a_byte_order_mark_as_its_format(tmp_path):
    labelled = tmp_path / "reviews.ft.txt"
    labelled.write_text(f"{BOM}__label__2 good: yes\n__label__1 bad: no\n", encoding="utf-8")
    # predict saw plain lines before and fed "__label__2 good: yes" to the model
    assert list(read_input_file(labelled, "auto")) == [("good: yes", 1), ("bad: no", 0)]
    lines = tmp_path / "reviews.txt"
    lines.write_text(f"{BOM}first review\nsecond\n", encoding="utf-8")
    assert list(read_input_file(lines, "auto")) == [("first review", None), ("second", None)]
    assert list(read_lines(io.BytesIO(f"{BOM}from stdin\n".encode()), "stdin")) == ["from stdin"]
