"""Our fast Treebank rules give NLTK's tokens: same rules, and the same output."""

from __future__ import annotations

import random

import pytest
from nltk.tokenize import NLTKWordTokenizer

from lstm_sentiment.data import treebank
from lstm_sentiment.data.files import SAMPLE_DIR, find_review_file
from lstm_sentiment.data.reviews import read_reviews
from lstm_sentiment.data.text import nltk_treebank_tokenize, treebank_tokenize

from helpers import text_pipeline

NLTK = NLTKWordTokenizer()


def test_the_rules_are_nltks_own_in_nltks_order():
    t = NLTKWordTokenizer
    nltk_before = [*t.STARTING_QUOTES, *t.PUNCTUATION, t.PARENS_BRACKETS, t.DOUBLE_DASHES]
    nltk_after = [*t.ENDING_QUOTES]
    nltk_after += [(p, r" \1 \2 ") for p in (*t.CONTRACTIONS2, *t.CONTRACTIONS3)]
    for theirs, ours in ((nltk_before, treebank._BEFORE), (nltk_after, treebank._AFTER)):
        assert len(theirs) == len(ours)
        for (pattern, template), (_, compiled, our_template, *_) in zip(theirs, ours, strict=True):
            engine = getattr(pattern, "_rx", pattern)  # nltk.redos wraps a `regex` pattern
            assert (compiled.pattern, compiled.flags, type(compiled), our_template) == (
                pattern.pattern,
                pattern.flags,
                type(engine),
                template,
            )


# The characters and fragments the rules act on, plus Unicode that (?i) and \w, \s treat specially.
PIECES = list("ab .'\",:;!?()[]{}<>-*`«»“”‘’„\u2013\u2014\t\n\x1c\xa0$%&@#0sStTnNdD") + [
    "can", "not", "gon", "na", "wan", "got", "ta", "'t", "is", "was", "n't", "'ll", "'re", "'s",
    "...", "--", "''", "``", "İ", "ı", "ſ", "K", "\u0301", "  ",
]  # fmt: skip


def test_random_strings_tokenize_as_nltk_does():
    rng = random.Random(0)
    for _ in range(8_000):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 16)))
        assert treebank.treebank_words(text) == NLTK.tokenize(text), repr(text)
        # several sentences: the rules set aside for the whole review apply to each sentence
        text = "".join(rng.choice([*PIECES, ". ", "! ", "? "]) for _ in range(rng.randint(0, 40)))
        assert treebank_tokenize(text) == nltk_treebank_tokenize(text), repr(text)


def sample_reviews(limit: int | None = None) -> list[str]:
    texts = []
    for split in ("train", "test"):
        texts += [text for _, text in read_reviews(find_review_file(SAMPLE_DIR, split))][:limit]
    return texts


def assert_same_tokens(texts: list[str]) -> None:
    clean = text_pipeline(tokenizer="treebank").clean
    for text in texts:
        for version in (text, clean(text)):  # raw (mixed case, digits) and cleaned
            assert treebank_tokenize(version) == nltk_treebank_tokenize(version), version


def test_sample_reviews_tokenize_as_nltk_does():
    assert_same_tokens(sample_reviews(limit=300))


@pytest.mark.slow
def test_the_whole_sample_tokenizes_as_nltk_does():
    texts = sample_reviews()
    assert len(texts) == 9_459 + 1_984
    assert_same_tokens(texts)
