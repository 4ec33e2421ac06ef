"""The vocabulary: words seen often enough in the training split, plus ``_PAD``=0 and ``_UNK``=1."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

PAD, UNK = "_PAD", "_UNK"
PAD_ID, UNK_ID = 0, 1


class Vocabulary:
    """Token <-> id. Unknown words map to ``_UNK`` (the recipe sent them to the pad id, 0)."""

    def __init__(self, tokens: Iterable[str]):
        self.itos = list(tokens)
        if self.itos[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {self.itos[:2]}")
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("a vocabulary lists each token once")

    @classmethod
    def from_counts(
        cls, counts: Mapping[str, int], min_freq: int, max_size: int | None = None
    ) -> Vocabulary:
        """Most frequent first (ties by token, so builds are reproducible); ``max_size`` counts
        the two special tokens."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        kept = sorted(
            (tok for tok, n in counts.items() if n >= min_freq and tok not in (PAD, UNK)),
            key=lambda tok: (-counts[tok], tok),
        )
        if max_size is not None:
            kept = kept[: max(max_size - 2, 0)]
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str]) -> list[int]:
        get = self.stoi.get
        return [get(tok, UNK_ID) for tok in tokens]
