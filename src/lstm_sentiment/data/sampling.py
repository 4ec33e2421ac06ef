"""A seeded, class-balanced subset of a review stream in one pass (``data.max_train_reviews``).

Each review draws a random key from a generator seeded with ``seed``; each class keeps the half of
``n`` with the smallest keys, in a bounded heap, so memory holds ``n`` reviews whatever the file's
size, and the same file and seed always give the same subset. The subset comes out in file order.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Iterable, Iterator

log = logging.getLogger(__name__)


def balanced_sample(
    records: Iterable[tuple[int, str]], n: int, seed: int, name: str = "reviews"
) -> Iterator[tuple[int, str]]:
    """``n`` of the ``(label, text)`` records, half of each label (0 and 1; an odd ``n`` gives
    label 1 the extra one). A label with fewer reviews than its half gives all it has, and the log
    says so."""
    if n < 2:
        raise ValueError(f"a balanced subset needs at least 2 reviews, got {n}")
    quota = {0: n // 2, 1: n - n // 2}
    rng = random.Random(seed)
    heaps: dict[int, list] = {0: [], 1: []}  # max-heaps by key (keys negated): the kept reviews
    seen = {0: 0, 1: 0}
    for position, (label, text) in enumerate(records):
        seen[label] += 1
        key, heap = rng.random(), heaps[label]
        if len(heap) < quota[label]:
            heapq.heappush(heap, (-key, position, text))
        elif -heap[0][0] > key:
            heapq.heapreplace(heap, (-key, position, text))
    kept = sorted((position, label, text) for label in heaps for _, position, text in heaps[label])
    short = [label for label in quota if seen[label] < quota[label]]
    (log.warning if short else log.info)(
        "%s: a balanced subset of %d of %d reviews (seed %d): %d negative, %d positive%s",
        name,
        len(kept),
        sum(seen.values()),
        seed,
        len(heaps[0]),
        len(heaps[1]),
        f" (label {short} has too few reviews for half)" if short else "",
    )
    for _, label, text in kept:
        yield label, text
