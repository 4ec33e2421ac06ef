"""The reference recipe (the well-known "LSTM from zero to hero" sentiment tutorial), re-implemented
faithfully as the baseline the benchmarks compare against.

Preprocessing, as the tutorial does it: read every line of the bz2 files into memory, lowercase,
digits to 0, its URL rule, ``nltk.word_tokenize`` per review, ``words.update([word.lower()])``
per word, a vocabulary of the words seen at least twice sorted by count, ids per review (unknown
words to 0, the pad id), and a left-padded ``np.zeros((n, 200), dtype=int)`` int64 matrix.

Without NLTK's ``punkt_tab`` download (not installed on our machines) ``word_tokenize`` cannot run;
the fallback is ``nltk_treebank_tokenize``: NLTK's own Treebank tokenizer (what ``word_tokenize``
runs on each sentence) on regex-split sentences, through NLTK's own code.

Its training loop is in ``reference_loop.py`` (this module imports no torch, so the peak memory
measured for this preprocessing is its own).
"""

from __future__ import annotations

import bz2
import re
from collections import Counter

import numpy as np

SEQ_LEN = 200
# The tutorial's URL rule: anything ending in "." + three letters (it also eats "product.but").
URL_RULE = re.compile(r"([^ ]+(?<=\.[a-z]{3}))")


def word_tokenize():
    """``nltk.word_tokenize`` when punkt_tab is installed, else NLTK's Treebank tokenizer on
    regex-split sentences (``nltk_treebank_tokenize``)."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return nltk.word_tokenize
    except LookupError:
        from lstm_sentiment.data.text import nltk_treebank_tokenize

        return nltk_treebank_tokenize


def read_lines(path: str) -> tuple[list[int], list[str]]:
    """The tutorial reads the whole file, then splits labels from texts and cleans."""
    lines = [x.decode("utf-8") for x in bz2.BZ2File(path).readlines()]
    labels = [0 if x.split(" ")[0] == "__label__1" else 1 for x in lines]
    sentences = [x.split(" ", 1)[1][:-1].lower() for x in lines]
    return labels, sentences


def clean(sentences: list[str]) -> list[str]:
    for i in range(len(sentences)):
        sentences[i] = re.sub(r"\d", "0", sentences[i])
        s = sentences[i]
        if "www." in s or "http:" in s or "https:" in s or ".com" in s:
            sentences[i] = URL_RULE.sub("<url>", s)
    return sentences


def pad_input(sentences: list[list[int]], seq_len: int = SEQ_LEN) -> np.ndarray:
    features = np.zeros((len(sentences), seq_len), dtype=int)
    for ii, review in enumerate(sentences):
        if len(review) != 0:
            features[ii, -len(review) :] = np.array(review)[:seq_len]
    return features


def preprocess(train_path: str, test_path: str, tokenize=None, on_tokens=None) -> dict:
    """The tutorial's preprocessing of a train and a test file; returns the padded matrices,
    labels and vocabulary. ``on_tokens(tokens)`` (not the tutorial's) sees each review's tokens,
    train then test, for the benchmark's identity check."""
    tokenize = tokenize or word_tokenize()
    train_labels, train_sentences = read_lines(train_path)
    test_labels, test_sentences = read_lines(test_path)
    train_sentences, test_sentences = clean(train_sentences), clean(test_sentences)

    words = Counter()
    for i, sentence in enumerate(train_sentences):
        train_sentences[i] = []
        for word in tokenize(sentence):
            words.update([word.lower()])
            train_sentences[i].append(word)
        if on_tokens:
            on_tokens(train_sentences[i])
    words = {k: v for k, v in words.items() if v > 1}
    words = sorted(words, key=words.get, reverse=True)
    words = ["_PAD", "_UNK"] + words
    word2idx = {o: i for i, o in enumerate(words)}
    # the tutorial's own lines, kept as written (unknown words -> 0, the pad id)
    for i, sentence in enumerate(train_sentences):
        train_sentences[i] = [word2idx[word] if word in word2idx else 0 for word in sentence]  # noqa: SIM401
    for i, sentence in enumerate(test_sentences):
        tokens = tokenize(sentence)  # the tutorial tokenizes inside the next line
        if on_tokens:
            on_tokens(tokens)
        test_sentences[i] = [
            word2idx[word.lower()] if word.lower() in word2idx else 0  # noqa: SIM401
            for word in tokens
        ]
    return {
        "train": pad_input(train_sentences),
        "test": pad_input(test_sentences),
        "train_labels": np.array(train_labels),
        "test_labels": np.array(test_labels),
        "vocab": words,
    }
