"""Datasets over cached splits, per-batch padding, and a length-bucketed batch sampler."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from lstm_sentiment.data.cache import EncodedSplit
from lstm_sentiment.data.vocab import PAD_ID


class ReviewDataset(Dataset):
    """Reviews ``indices`` of an encoded split; item ``i`` is ``(ids, label)``."""

    def __init__(self, split: EncodedSplit, indices: np.ndarray | None = None):
        self.split = split
        self.indices = np.arange(len(split)) if indices is None else np.asarray(indices)
        self.lengths = split.lengths[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        j = self.indices[i]
        return self.split.review(j), int(self.split.labels[j])


def pad_batch(
    items: Sequence[tuple[np.ndarray, int]], fixed_len: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad to the longest review in the batch (or to ``fixed_len``, the reference recipe's
    fixed 200), returning ``ids`` [B, T] int64, ``lengths`` [B] and float ``labels`` [B]."""
    lengths = torch.tensor([len(ids) for ids, _ in items], dtype=torch.int64)
    width = fixed_len or int(lengths.max())
    ids = torch.full((len(items), width), PAD_ID, dtype=torch.int64)
    for row, (review, _) in enumerate(items):
        ids[row, : len(review)] = torch.from_numpy(np.asarray(review[:width], dtype=np.int64))
    labels = torch.tensor([label for _, label in items], dtype=torch.float32)
    return {"ids": ids, "lengths": lengths.clamp(max=width), "labels": labels}


class PadCollate:
    """Picklable ``pad_batch``: to each batch's longest review, or to a fixed width (``fixed_len``,
    for the fixed-padding comparison)."""

    def __init__(self, fixed_len: int | None):
        self.fixed_len = fixed_len

    def __call__(self, items):
        return pad_batch(items, self.fixed_len)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, so per-batch padding wastes little.

    Each epoch: shuffle all indices, cut them into pools of ``pool_batches`` batches, sort each
    pool by length, cut it into batches, shuffle the batch order. Under DDP every rank builds the
    same list (same seed and epoch) and takes every ``num_replicas``-th batch, after the list is
    trimmed or padded so all ranks run the same number of steps.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        shuffle: bool = True,
        pool_batches: int = 50,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if batch_size < 1 or pool_batches < 1:
            raise ValueError("batch_size and pool_batches must be >= 1")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.pool_batches = batch_size, shuffle, pool_batches
        self.drop_last, self.seed = drop_last, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch))
        n = len(self.lengths)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        size = self.batch_size
        pool = size * self.pool_batches
        batches = []
        for start in range(0, n, pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _per_rank(self, n_batches: int) -> int:
        if self.drop_last:
            return n_batches // self.num_replicas
        return -(-n_batches // self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        if self.num_replicas > 1:
            total = self._per_rank(len(batches)) * self.num_replicas
            batches = (batches * (total // max(len(batches), 1) + 1))[:total]
            batches = batches[self.rank :: self.num_replicas]
        for batch in batches:
            yield batch.tolist()

    def __len__(self) -> int:
        n, pool = len(self.lengths), self.batch_size * self.pool_batches
        full_pools, rest = divmod(n, pool)
        rounding = (
            (lambda k: k // self.batch_size)
            if self.drop_last
            else (lambda k: -(-k // self.batch_size))
        )
        return self._per_rank(full_pools * self.pool_batches + rounding(rest))
