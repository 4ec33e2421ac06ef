"""The LightningDataModule: review files -> cached token ids -> padded batches."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader

from lstm_sentiment.data.batching import BucketBatchSampler, PadCollate, ReviewDataset
from lstm_sentiment.data.cache import (
    CacheError,
    CacheSpec,
    EncodedSplit,
    build_cache,
    load_cache,
    read_reports,
    unknown_token_share,
)
from lstm_sentiment.data.encoder import TextEncoder
from lstm_sentiment.data.files import ReviewFileError, describe_data_dir, find_review_file
from lstm_sentiment.data.text import TextPipeline
from lstm_sentiment.data.vocab import Vocabulary

log = logging.getLogger(__name__)

# Above this share of unknown (_UNK) tokens in the training split, training is warned about: the
# network then learns mostly from review lengths (the sample at the defaults: ~3%).
MAX_UNKNOWN_SHARE = 0.25


class ReviewDataModule(pl.LightningDataModule):
    """Amazon Review Polarity as batches of ``ids`` [B, T], ``lengths`` [B], ``labels`` [B].

    ``prepare_data`` tokenizes once into the on-disk cache (once per node); ``setup`` loads that
    cache memory-mapped on every process and splits off validation: a seeded ``val_fraction`` of
    the training file (default: the test file stays untouched until the end) or, as the reference
    recipe did, the first half of the test file (``val_source=test_half``).

    The arguments are ``data.*`` of conf/data/amazon_polarity.yaml, which holds their defaults
    and whose schema (``config.DataSchema``) checks them.
    """

    def __init__(
        self,
        *,
        data_dir: str,
        train_file: str | None,
        test_file: str | None,
        file_format: str,
        lowercase: bool,
        replace_digits: bool,
        replace_urls: bool,
        tokenizer: str,
        max_len: int,
        min_freq: int,
        max_vocab_size: int | None,
        max_train_reviews: int | None,
        val_source: str,
        val_fraction: float,
        split_seed: int,
        batch_size: int,
        eval_batch_size: int | None,
        bucket: bool,
        pool_batches: int,
        fixed_padding: bool,
        num_workers: int,
        preprocess_workers: int | None,
        cache_dir: str,
        max_bad_fraction: float,
        progress: bool,
    ):
        super().__init__()
        self.data_dir, self.train_file, self.test_file = data_dir, train_file, test_file
        self.file_format = file_format
        pipeline = TextPipeline(lowercase, replace_digits, replace_urls, tokenizer)
        self.encoder = TextEncoder(pipeline, max_len)  # its vocabulary comes with the cache
        self.min_freq, self.max_vocab_size = min_freq, max_vocab_size
        self.max_train_reviews = max_train_reviews
        self.val_source, self.val_fraction, self.split_seed = val_source, val_fraction, split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.bucket, self.pool_batches, self.fixed_padding = bucket, pool_batches, fixed_padding
        self.num_workers, self.preprocess_workers = num_workers, preprocess_workers
        self.cache_dir, self.max_bad_fraction, self.progress = cache_dir, max_bad_fraction, progress
        self.datasets: dict[str, ReviewDataset] = {}

    @property
    def vocab(self) -> Vocabulary | None:
        return self.encoder.vocab

    # -- cache ------------------------------------------------------------------------------

    def review_files(self) -> tuple[Path, Path]:
        """The train and test files this module reads."""
        return (
            find_review_file(self.data_dir, "train", self.train_file),
            find_review_file(self.data_dir, "test", self.test_file),
        )

    def spec(self) -> CacheSpec:
        train_path, test_path = self.review_files()
        return CacheSpec(
            train_path=str(train_path),
            test_path=str(test_path),
            encoder=TextEncoder(self.encoder.pipeline, self.encoder.max_len),  # no vocabulary
            min_freq=self.min_freq,
            max_vocab_size=self.max_vocab_size,
            file_format=self.file_format,
            max_train_reviews=self.max_train_reviews,
            sample_seed=self.split_seed,
        )

    def log_data_used(self) -> None:
        """Log the data folder (and why it is the one), the files, and for each file what was
        read and skipped, with the first bad line numbers: also when nothing failed."""
        train_path, test_path = self.review_files()
        log.info("data folder: %s", describe_data_dir(self.data_dir))
        folder = Path(self.cache_dir) / self.spec().key()
        reports = read_reports(folder, {"train": str(train_path), "test": str(test_path)})
        for skipped, line in reports.values():
            log.log(logging.WARNING if skipped else logging.INFO, line)

    def prepare_data(self) -> None:
        try:
            build_cache(
                self.spec(),
                self.cache_dir,
                workers=self.preprocess_workers,
                max_bad_fraction=self.max_bad_fraction,
                progress=self.progress,
            )
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            raise ReviewFileError(
                f"cannot write the token cache in {self.cache_dir} ({e.strerror}): free space "
                "on its disk, or set paths.cache_dir to a folder on another disk"
            ) from None

    def _load(self):
        folder = Path(self.cache_dir) / self.spec().key()
        try:
            return load_cache(folder, self.max_bad_fraction)
        except CacheError:
            self.prepare_data()  # setup() without prepare_data(), e.g. when used by hand
            return load_cache(folder, self.max_bad_fraction)

    @property
    def vocab_size(self) -> int:
        if self.vocab is None:
            self.encoder = self.encoder.with_vocab(self._load()[0])
        return len(self.vocab)

    # -- splits -----------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        vocab, splits = self._load()
        self.encoder = self.encoder.with_vocab(vocab)
        self.datasets = self._split(splits["train"], splits["test"])

    def split_sizes(self, train_reviews: int, test_reviews: int) -> dict[str, int]:
        """How many reviews each split gets from review files of these sizes."""
        if self.val_source == "train":
            held = max(1, round(self.val_fraction * train_reviews))
            return {"train": train_reviews - held, "val": held, "test": test_reviews}
        half = test_reviews // 2
        return {"train": train_reviews, "val": half, "test": test_reviews - half}

    def _split(self, train: EncodedSplit, test: EncodedSplit) -> dict[str, ReviewDataset]:
        n_val = self.split_sizes(len(train), len(test))["val"]
        if self.val_source == "train":
            order = np.random.default_rng(self.split_seed).permutation(len(train))
            return {
                "train": ReviewDataset(train, np.sort(order[n_val:])),
                "val": ReviewDataset(train, np.sort(order[:n_val])),
                "test": ReviewDataset(test),
            }
        return {
            "train": ReviewDataset(train),
            "val": ReviewDataset(test, np.arange(n_val)),
            "test": ReviewDataset(test, np.arange(n_val, len(test))),
        }

    def check_trainable(self) -> None:
        """Refuse data no classifier can be trained on, in one line saying what to change: a
        vocabulary of ``_PAD`` and ``_UNK`` alone, a training split without both classes, no
        validation review. Warn about a one-class validation or test split (its AUROC and F1
        mean nothing) and about a training split mostly of unknown tokens."""
        vocab, splits = self._load()
        train_path, test_path = self.review_files()
        datasets = self._split(splits["train"], splits["test"])
        where = {"train": train_path, "val": train_path, "test": test_path}
        if self.val_source == "test_half":
            where["val"] = test_path
        for name in ("train", "val", "test"):
            labels = datasets[name].split.labels[datasets[name].indices]
            classes = {int(c) for c in np.unique(labels)}
            if len(classes) == 2:
                continue
            held = f"{len(labels)} reviews" + (
                f" ({'positive' if 1 in classes else 'negative'} only)" if classes else ""
            )
            problem = f"the {name} split of {where[name]} holds {held}"
            if name == "train" or not len(labels):
                raise ReviewFileError(
                    f"{problem}: a classifier needs reviews of both classes to train and some "
                    f"to validate on (data.val_fraction={self.val_fraction}, "
                    f"data.val_source={self.val_source}); use a larger review file"
                )
            log.warning("%s: its AUROC and F1 say nothing", problem)
        if len(vocab) <= 2:
            raise ReviewFileError(
                f"{train_path}: no word occurs data.min_freq={self.min_freq} times, so the "
                "vocabulary holds only _PAD and _UNK and every review reads as unknown words: "
                "lower data.min_freq (or raise data.max_vocab_size)"
            )
        folder = Path(self.cache_dir) / self.spec().key()
        share = unknown_token_share(folder, "train")
        if share > MAX_UNKNOWN_SHARE:
            log.warning(
                "%.0f%% of the training tokens are unknown to the %d-word vocabulary "
                "(data.min_freq=%s, data.max_vocab_size=%s): the network sees mostly _UNK",
                100 * share, len(vocab), self.min_freq, self.max_vocab_size,
            )  # fmt: skip

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        batch_size = self.batch_size if shuffle else self.eval_batch_size
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        # Without bucketing, pools of one batch are plain shuffled batches. Evaluation order does
        # not matter, so evaluation batches are always length-sorted: less padding.
        sampler = BucketBatchSampler(
            dataset.lengths,
            batch_size,
            shuffle=shuffle,
            pool_batches=self.pool_batches if (self.bucket or not shuffle) else 1,
            seed=self.split_seed,
            num_replicas=world,
            rank=rank,
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=PadCollate(self.encoder.max_len if self.fixed_padding else None),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # -- checkpoint -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The text encoder, which prediction and eval need: saved in every checkpoint."""
        return self.encoder.to_dict() if self.vocab is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.encoder = TextEncoder.from_dict(state)
