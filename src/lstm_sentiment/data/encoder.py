"""Text -> token ids: the one contract that training, eval, predict and export share."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from lstm_sentiment.data.text import TextPipeline
from lstm_sentiment.data.vocab import UNK, Vocabulary


@dataclass(frozen=True)
class TextEncoder:
    """The text settings, ``max_len`` and (once built from the training split) the vocabulary.

    The cache tokenizes the review files with it, a checkpoint saves it (``to_dict``), predict
    and eval rebuild it from there (``from_dict``), and export writes that dict beside the model.
    """

    pipeline: TextPipeline
    max_len: int
    vocab: Vocabulary | None = None

    def split_tokens(self, text: str) -> tuple[list[str], list[str]]:
        """The tokens the network reads (the first ``max_len``) and those cut off after them.

        A review with no tokens (all punctuation) reads as one ``_UNK``, so it still gets a step.
        """
        tokens = self.pipeline(text) or [UNK]
        return tokens[: self.max_len], tokens[self.max_len :]

    def tokens(self, text: str) -> list[str]:
        return self.split_tokens(text)[0]

    def encode(self, text: str) -> list[int]:
        if self.vocab is None:
            raise ValueError("this encoder has no vocabulary yet (it is built with the cache)")
        return self.vocab.encode(self.tokens(text))

    def with_vocab(self, vocab: Vocabulary) -> TextEncoder:
        return replace(self, vocab=vocab)

    def settings(self) -> dict[str, Any]:
        """The text settings as ``data.*`` keys: ``lowercase``, ..., ``tokenizer``, ``max_len``."""
        return {**self.pipeline.to_dict(), "max_len": self.max_len}

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, strings and numbers: what a checkpoint saves and export writes."""
        if self.vocab is None:
            raise ValueError("an encoder without a vocabulary is not saved")
        return {
            "vocab": self.vocab.itos,
            "pipeline": self.pipeline.to_dict(),
            "max_len": self.max_len,
        }

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TextEncoder:
        return cls(
            TextPipeline(**saved["pipeline"]), int(saved["max_len"]), Vocabulary(saved["vocab"])
        )
