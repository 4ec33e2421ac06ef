"""Text cleaning and tokenization, as the reference recipe does it, minus its faults.

The recipe lowercases, maps digits to 0 and URLs to ``<url>``, then runs NLTK's ``word_tokenize``.
Two of its faults are fixed here: its URL pattern (``[^ ]+(?<=\\.[a-z]{3})``) eats ordinary words
glued to a full stop (``product.but``), and ``word_tokenize`` needs the ``punkt_tab`` download.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from lstm_sentiment.errors import UserError

# nltk is imported where a tokenizer needs it: importing it pulls in scipy (1-3 s here), which
# every tokenizing worker process would pay even for the default wordpunct tokenizer.

URL_TOKEN = "<url>"
# A URL needs a scheme, a "www." or a real top-level domain: "amazon.com" is one, "mr.bob" is not.
URL_RE = re.compile(
    r"(?:https?://|ftp://|www\.)\S+"
    r"|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|net|org|edu|gov|info|biz|io|uk|de)"
    r"\b(?:/\S*)?",
    re.IGNORECASE,
)
# A cheap scan that rules out the ~99% of reviews without a URL before the costly pattern runs.
URL_HINT_RE = re.compile(r"://|www\.|\.(?:com|net|org|edu|gov|info|biz|io|uk|de)\b", re.IGNORECASE)
DIGIT_RE = re.compile(r"\d")
# NLTK's wordpunct_tokenize pattern, compiled without the flags NLTK adds (same tokens, which a
# test checks, and 3x faster).
WORDPUNCT_RE = re.compile(r"\w+|[^\w\s]+")
# punkt splits sentences before the Treebank rules run; a full stop followed by a space does nearly
# the same without the downloaded model.
SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")
TOKENIZERS = ("wordpunct", "treebank", "punkt")
PUNKT_HELP = (
    "tokenizer 'punkt' needs NLTK's punkt_tab data, which is not installed: run "
    "`python -m nltk.downloader punkt_tab` (or pick data.tokenizer=treebank, the same rules "
    "without the download, or data.tokenizer=wordpunct)"
)


@dataclass(frozen=True)
class TextPipeline:
    """Every setting that turns a review into tokens (``data.*`` keys of the same names)."""

    lowercase: bool
    replace_digits: bool
    replace_urls: bool
    tokenizer: str

    def __post_init__(self) -> None:
        # the config checks this at composition; a checkpoint's dict is checked here
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {self.tokenizer!r}: choose one of {TOKENIZERS}")
        if self.tokenizer == "punkt":
            require_punkt()

    def to_dict(self) -> dict:
        return asdict(self)

    def clean(self, text: str) -> str:
        if self.lowercase:
            text = text.lower()
        if self.replace_digits:
            text = DIGIT_RE.sub("0", text)
        if self.replace_urls and URL_HINT_RE.search(text):
            text = URL_RE.sub(f" {URL_TOKEN} ", text)
        return text

    def tokenize(self, text: str) -> list[str]:
        """Tokens of an already cleaned text; ``<url>`` stays one token."""
        split = _TOKENIZE[self.tokenizer]
        if URL_TOKEN not in text:
            return split(text)
        tokens: list[str] = []
        for i, part in enumerate(text.split(URL_TOKEN)):
            if i:
                tokens.append(URL_TOKEN)
            tokens.extend(split(part))
        return tokens

    def __call__(self, text: str) -> list[str]:
        return self.tokenize(self.clean(text))


class TokenizerDataMissing(UserError):
    """A tokenizer whose NLTK data is not installed."""


def require_punkt() -> None:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        raise TokenizerDataMissing(PUNKT_HELP) from None


def treebank_tokenize(text: str) -> list[str]:
    """NLTK ``word_tokenize`` without punkt: Treebank rules on regex-split sentences."""
    from lstm_sentiment.data.treebank import active_rules, treebank_words  # NLTK's, faster

    rules = active_rules(text)
    return [tok for sent in SENTENCE_END_RE.split(text) for tok in treebank_words(sent, rules)]


def nltk_treebank_tokenize(text: str) -> list[str]:
    """``treebank_tokenize`` through NLTK's own (4x slower) tokenizer: the same tokens."""
    from nltk.tokenize import NLTKWordTokenizer

    tokenizer = NLTKWordTokenizer()
    return [tok for sent in SENTENCE_END_RE.split(text) for tok in tokenizer.tokenize(sent)]


def punkt_tokenize(text: str) -> list[str]:
    import nltk

    return nltk.word_tokenize(text)


_TOKENIZE = {
    "wordpunct": WORDPUNCT_RE.findall,
    "treebank": treebank_tokenize,
    "punkt": punkt_tokenize,
}
