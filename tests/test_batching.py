"""Per-batch padding, the length-bucketed sampler (also under DDP), and batch-independent logits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lstm_sentiment.data.batching import BucketBatchSampler, pad_batch
from lstm_sentiment.data.vocab import PAD_ID

from helpers import small_net


@pytest.fixture(scope="module")
def lengths() -> np.ndarray:
    return np.random.default_rng(0).integers(1, 200, size=1003)


def epoch(sampler: BucketBatchSampler, n: int) -> list[list[int]]:
    sampler.set_epoch(n)
    return list(sampler)


def padding(lengths: np.ndarray, batches: list[list[int]]) -> int:
    return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)


def test_every_review_once_per_epoch(lengths):
    batches = epoch(BucketBatchSampler(lengths, 32), 0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert sorted(map(len, batches)) == [1003 % 32] + [32] * (1003 // 32)  # one pool, one rest


def test_batches_are_length_homogeneous(lengths):
    bucketed = epoch(BucketBatchSampler(lengths, 32, pool_batches=50), 0)
    plain = epoch(BucketBatchSampler(lengths, 32, pool_batches=1), 0)  # plain shuffled batches
    assert padding(lengths, bucketed) < 0.1 * padding(lengths, plain)
    # a pool holds 50 batches: each batch spans a narrow slice of the length range
    assert np.median([np.ptp(lengths[b]) for b in bucketed]) < 10


def test_epochs_differ_and_a_seed_repeats(lengths):
    sampler = BucketBatchSampler(lengths, 32)
    first, second = epoch(sampler, 0), epoch(sampler, 1)
    assert first != second
    assert [sorted(b) for b in first] != [sorted(b) for b in second]  # not just the order
    assert epoch(BucketBatchSampler(lengths, 32), 0) == first


def test_without_shuffle_order_is_fixed_and_sorted_within_pools(lengths):
    batches = list(BucketBatchSampler(lengths, 16, shuffle=False, pool_batches=4))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for start in range(0, len(flat), 64):
        pool = lengths[flat[start : start + 64]]
        assert np.all(np.diff(pool) >= 0)


@pytest.mark.parametrize("n", [1003, 1024])  # an odd and an even number of batches of 32
@pytest.mark.parametrize("drop_last", [False, True])
def test_ddp_ranks_take_equal_disjoint_shares(n, drop_last):
    lengths = np.random.default_rng(1).integers(1, 200, size=n)
    ranks = [
        epoch(BucketBatchSampler(lengths, 32, drop_last=drop_last, num_replicas=2, rank=r), 3)
        for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1])  # every rank runs the same number of steps
    seen = [{i for b in batches for i in b} for batches in ranks]
    total = -(-n // 32)
    if drop_last or total % 2 == 0:
        assert not seen[0] & seen[1]
    else:  # an odd batch count is evened out by repeating one batch, as DistributedSampler does
        assert len(seen[0] & seen[1]) <= 32
    if not drop_last:
        assert seen[0] | seen[1] == set(range(n))


@pytest.mark.parametrize(
    "n, batch, pool, drop_last, replicas",
    itertools.product([1, 31, 64, 1003], [1, 8, 32], [1, 5, 50], [False, True], [1, 2, 3]),
)
def test_len_matches_iteration(n, batch, pool, drop_last, replicas):
    lengths = np.arange(1, n + 1)
    for rank in range(replicas):
        sampler = BucketBatchSampler(lengths, batch, pool_batches=pool, drop_last=drop_last,
                                     num_replicas=replicas, rank=rank)  # fmt: skip
        assert len(sampler) == len(list(sampler))


def test_pad_batch_pads_to_the_longest_review_or_a_fixed_width():
    items = [(np.array([5, 6, 7], np.int32), 1), (np.array([8], np.int32), 0)]
    batch = pad_batch(items)
    assert batch["ids"].tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID]]
    assert batch["ids"].dtype == torch.int64
    assert batch["lengths"].tolist() == [3, 1] and batch["labels"].tolist() == [1.0, 0.0]
    fixed = pad_batch(items, fixed_len=200)
    assert fixed["ids"].shape == (2, 200) and fixed["lengths"].tolist() == [3, 1]


# ---------------------------------------------------------------------------------------------
# a review's logit must not depend on the batch it lands in


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pack": True},
        {"pack": False},
        {"bidirectional": True, "pack": True},
        {"bidirectional": True, "pack": False},
        {"bidirectional": True, "pack": False, "num_layers": 2},
        {"pack": False, "num_layers": 2},
        {"pack": True, "rnn_type": "gru"},
        {"pack": False, "cell": "scratch"},
    ],
    ids=[
        "pack",
        "mask",
        "bidirectional-pack",
        "bidirectional-mask",
        "bidirectional-mask-2-layers",
        "mask-2-layers",
        "gru-pack",
        "scratch-cell",
    ],  # fmt: skip
)
def test_logit_does_not_depend_on_the_batch(kwargs):
    torch.manual_seed(0)
    net = small_net(hidden_size=12, **kwargs).eval()
    rng = np.random.default_rng(0)
    review = (rng.integers(2, 50, size=7).astype(np.int32), 1)
    others = [(rng.integers(2, 50, size=n).astype(np.int32), 0) for n in (3, 15, 1, 7, 40)]

    def logit_of_first(items) -> float:
        batch = pad_batch(items)
        with torch.no_grad():
            return net(batch["ids"], batch["lengths"])[0].item()

    alone = logit_of_first([review])
    for batch in ([review, *others], [review, others[1]], [review, others[0]]):
        assert logit_of_first(batch) == pytest.approx(alone, abs=1e-5)
    fixed = pad_batch([review, others[0]], fixed_len=200)
    with torch.no_grad():
        assert net(fixed["ids"], fixed["lengths"])[0].item() == pytest.approx(alone, abs=1e-5)
