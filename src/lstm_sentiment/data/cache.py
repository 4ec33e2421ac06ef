"""Tokenize the review files once, in parallel, into an on-disk cache of ragged int32 token ids.

A cache folder holds, per split, ``ids`` (every review's ids back to back, truncated to
``max_len``), ``offsets`` (review ``i`` is ``ids[offsets[i]:offsets[i+1]]``) and ``labels``, all
``.npy`` and loaded memory-mapped, plus ``vocab.json`` and ``meta.json``. No padded int64 matrix
is ever built: batches are padded when they are made.

The folder's name is a hash of everything that shapes its contents (the input files' contents and
every preprocessing setting), so a changed setting or file builds a new cache and an unchanged one
loads in seconds. A cache is built in a temporary folder and renamed into place when complete, so a
crash mid-build leaves nothing that later loads; a cache that fails its checks is rebuilt.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from filelock import FileLock
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lstm_sentiment.data.encoder import TextEncoder
from lstm_sentiment.data.reviews import ReadStats, read_reviews
from lstm_sentiment.data.sampling import balanced_sample
from lstm_sentiment.data.vocab import PAD, UNK, UNK_ID, Vocabulary

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: keyed by the files' whole contents; meta.json counts unknown tokens
SPLITS = ("train", "test")
CHUNK_REVIEWS = 1000  # per task sent to a worker: small enough to balance 2 workers on 10k reviews
BLOCK_IDS = 1 << 22  # ids per block when remapping or checking (16 MiB of int32)

log = logging.getLogger(__name__)


class CacheError(RuntimeError):
    """A cache folder that is incomplete, truncated or inconsistent."""


@dataclass(frozen=True)
class CacheSpec:
    """Everything a cache's contents depend on."""

    train_path: str
    test_path: str
    encoder: TextEncoder  # its text settings and max_len; the cache builds its vocabulary
    min_freq: int
    max_vocab_size: int | None
    file_format: str
    max_train_reviews: int | None  # a seeded, class-balanced subset of the train file ...
    sample_seed: int  # ... drawn with this seed

    def key(self) -> str:
        blob = json.dumps(
            {
                "version": CACHE_VERSION,
                "files": [file_identity(self.train_path), file_identity(self.test_path)],
                "pipeline": self.encoder.pipeline.to_dict(),
                "max_len": self.encoder.max_len,
                "min_freq": self.min_freq,
                "max_vocab_size": self.max_vocab_size,
                "file_format": self.file_format,
                "train_subset": [self.max_train_reviews, self.sample_seed]
                if self.max_train_reviews
                else None,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


# A process hashes each file once: by inode, size, mtime and ctime, which an edit cannot all keep
# (a user can set mtime back, not ctime), so a sweep's trials and the DDP setup calls pay once.
_DIGESTS: dict[tuple, str] = {}


def file_identity(path: str) -> dict:
    """Size and the sha256 of the whole file, streamed: an edit anywhere builds a new cache, also
    one that kept the size and modification time; the same bytes elsewhere reuse the cache.
    About 1.4 s per GB here (benchmarks: `--section scale`, "warm load s")."""
    p = Path(path).resolve()
    st = p.stat()
    memo = (str(p), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if memo not in _DIGESTS:
        h = hashlib.sha256()
        buffer = bytearray(1 << 20)
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buffer):
                h.update(memoryview(buffer)[:n])
        _DIGESTS[memo] = h.hexdigest()
    return {"size": st.st_size, "sha256": _DIGESTS[memo]}


@dataclass
class EncodedSplit:
    """One split's reviews as ragged ids; arrays may be memory-mapped."""

    ids: np.ndarray  # int32, all reviews back to back
    offsets: np.ndarray  # int64, len(self) + 1
    labels: np.ndarray  # int8, 0 negative / 1 positive

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def review(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]


# ---------------------------------------------------------------------------------------------
# building


def _encode_chunk(encoder: TextEncoder, chunk: tuple[list, list[str]]):
    """Tokenize a chunk's texts with chunk-local ids, so only each distinct token crosses
    processes.

    Returns the chunk's distinct tokens, the local ids the network reads, their lengths, and
    per-token counts over the whole reviews (cut-off tokens too), which is what the vocabulary
    counts.
    """
    texts = chunk[1]
    kept: list[str] = []
    cut: list[str] = []
    lengths = np.empty(len(texts), np.int64)
    for i, text in enumerate(texts):
        read, rest = encoder.split_tokens(text)
        kept += read
        cut += rest
        lengths[i] = len(read)
    # a missing token gets the next id, all inside C (a Python loop per token costs 3x more)
    local: defaultdict[str, int] = defaultdict(itertools.count().__next__)
    ids = np.fromiter(map(local.__getitem__, kept), np.int32, len(kept))
    cut_ids = np.fromiter(map(local.__getitem__, cut), np.int32, len(cut))
    counts = np.bincount(np.concatenate([ids, cut_ids]), minlength=len(local))
    return list(local), ids, lengths, counts


def _chunks(records: Iterable[tuple[int, str]], size: int) -> Iterator[tuple[list, list]]:
    labels, texts = [], []
    for label, text in records:
        labels.append(label)
        texts.append(text)
        if len(texts) == size:
            yield labels, texts
            labels, texts = [], []
    if texts:
        yield labels, texts


def _ordered_map(pool: Executor | None, fn: Callable, items: Iterable, window: int) -> Iterator:
    """``map`` that keeps at most ``window`` tasks in flight, so a 1.5 GB file is never slurped
    into the pool's queue. Yields ``(item, fn(item))`` in order."""
    if pool is None:
        for item in items:
            yield item, fn(item)
        return
    pending: deque = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= window:
            done_item, fut = pending.popleft()
            yield done_item, fut.result()
    while pending:
        done_item, fut = pending.popleft()
        yield done_item, fut.result()


def build_cache(
    spec: CacheSpec,
    cache_root: str | Path,
    workers: int | None,
    max_bad_fraction: float,
    progress: bool = True,
) -> Path:
    """Build the cache for ``spec`` under ``cache_root`` unless a valid one is there; return its
    folder."""
    cache_root = Path(cache_root)
    final = cache_root / spec.key()
    if _is_valid(final, max_bad_fraction):
        return final
    cache_root.mkdir(parents=True, exist_ok=True)
    # The processes of a DDP job (and its nodes, on a shared file system with locks) start
    # together: the first builds while the others wait here, then load what it built.
    with FileLock(cache_root / f".{final.name}.lock"):
        if _is_valid(final, max_bad_fraction):
            return final
        workers = workers or default_workers()
        log.info("building the token cache %s (pid %d)", final, os.getpid())
        _remove_abandoned_builds(cache_root)
        tmp = cache_root / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            _build_into(tmp, spec, workers, max_bad_fraction, progress)
            shutil.rmtree(final, ignore_errors=True)  # a stale or corrupt cache of the same key
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _is_valid(folder: Path, max_bad_fraction: float) -> bool:
    try:
        load_cache(folder, max_bad_fraction)
    except CacheError:
        return False
    return True


def default_workers() -> int:
    """All the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _remove_abandoned_builds(cache_root: Path) -> None:
    """Delete the temporary folders of builds whose process is gone (killed mid-build)."""
    for folder in cache_root.glob(".tmp-*-*"):
        pid = folder.name.rsplit("-", 1)[1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


def _worker_start(parent: int) -> None:
    """A tokenizing worker dies with the process that started it. Killed by SIGTERM or SIGKILL,
    that process cannot stop its workers, which would tokenize on (hundreds of MB each) for
    minutes: the kernel kills them instead (Linux's parent-death signal). Ctrl-C reaches the
    whole process group: workers ignore it, and the parent's interrupt shuts the pool down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _build_into(tmp: Path, spec: CacheSpec, workers: int, max_bad_fraction: float, progress: bool):
    started = time.perf_counter()
    provisional = {PAD: 0, UNK: 1}  # every distinct token of the training split
    counts = np.zeros(1 << 16, np.int64)  # training-split counts by provisional id
    meta: dict = {"version": CACHE_VERSION, "spec_key": spec.key(), "splits": {}}
    encoder = functools.partial(_encode_chunk, spec.encoder)  # picklable, for the workers
    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),
            initializer=_worker_start,
            initargs=(os.getpid(),),
        )
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} reviews"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, disable=not progress, transient=False) as bar:
            for split, path in (("train", spec.train_path), ("test", spec.test_path)):
                stats = ReadStats(path)
                task = bar.add_task(f"tokenizing {split} ({workers} proc)", total=None)
                lengths, labels = [], []
                records = read_reviews(path, spec.file_format, stats)
                if split == "train" and spec.max_train_reviews:
                    records = balanced_sample(
                        records, spec.max_train_reviews, spec.sample_seed, path
                    )
                with open(tmp / f"{split}.raw", "wb") as raw:
                    chunks = _chunks(records, CHUNK_REVIEWS)
                    for (chunk_labels, _), result in _ordered_map(
                        pool, encoder, chunks, 2 * workers
                    ):
                        tokens, ids, chunk_lengths, chunk_counts = result
                        if split == "train":
                            new = (provisional.setdefault(t, len(provisional)) for t in tokens)
                        else:  # a word unseen in training is out of the vocabulary anyway
                            new = (provisional.get(t, 1) for t in tokens)
                        remap = np.fromiter(new, np.int64, len(tokens))
                        raw.write(remap.astype(np.int32)[ids].tobytes())
                        lengths.append(chunk_lengths)
                        labels.append(np.asarray(chunk_labels, np.int8))
                        if split == "train":
                            if len(provisional) > len(counts):
                                grown = np.zeros(2 * len(provisional), np.int64)
                                grown[: len(counts)] = counts
                                counts = grown
                            counts[remap] += chunk_counts
                        bar.update(task, completed=stats.records)
                stats.check(max_bad_fraction)
                meta["splits"][split] = {
                    "reviews": int(sum(map(len, labels))),
                    "records": stats.records,
                    "bad": stats.bad,
                    "bad_examples": stats.examples,
                }
                _write_split_lengths_labels(tmp, split, lengths, labels)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    # only the frequent enough tokens make a dict of counts (the rare ones can be millions)
    n_counted, min_freq = len(counts), spec.min_freq
    frequent = {
        tok: int(counts[i])
        for tok, i in provisional.items()
        if i < n_counted and counts[i] >= min_freq
    }
    vocab = Vocabulary.from_counts(frequent, min_freq=min_freq, max_size=spec.max_vocab_size)
    to_final = np.full(len(provisional), UNK_ID, np.int32)  # provisional _PAD is never emitted
    for i, tok in enumerate(vocab.itos[2:], start=2):
        to_final[provisional[tok]] = i
    del provisional, frequent
    for split in SPLITS:
        tokens, unknown = _finalize_ids(tmp, split, to_final)
        meta["splits"][split] |= {"tokens": tokens, "unknown_tokens": unknown}
    (tmp / "vocab.json").write_text(json.dumps(vocab.itos, ensure_ascii=False))
    meta["vocab_size"] = len(vocab)
    meta["seconds"] = round(time.perf_counter() - started, 2)
    meta["ids_sizes"] = {s: (tmp / f"{s}.ids.npy").stat().st_size for s in SPLITS}
    # meta.json last: its presence with matching sizes is what marks a complete cache
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


def _write_split_lengths_labels(tmp: Path, split: str, lengths: list, labels: list) -> None:
    lengths_arr = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.zeros(len(lengths_arr) + 1, np.int64)
    np.cumsum(lengths_arr, out=offsets[1:])
    np.save(tmp / f"{split}.offsets.npy", offsets)
    np.save(tmp / f"{split}.labels.npy", np.concatenate(labels) if labels else np.zeros(0, np.int8))


def _finalize_ids(tmp: Path, split: str, to_final: np.ndarray) -> tuple[int, int]:
    """Provisional ids -> vocabulary ids, block by block through plain reads and writes (memory
    maps would count the whole 1+ GB file of the full set in this process's resident memory).
    Returns the split's token count and how many of them are ``_UNK``."""
    raw_path = tmp / f"{split}.raw"
    n = raw_path.stat().st_size // 4
    unknown = 0
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int32)), "fortran_order": False}
    with open(raw_path, "rb") as src, open(tmp / f"{split}.ids.npy", "wb") as dst:
        np.lib.format.write_array_header_1_0(dst, {**header, "shape": (n,)})
        while (block := np.fromfile(src, np.int32, BLOCK_IDS)).size:
            final = to_final[block]
            unknown += int(np.count_nonzero(final == UNK_ID))
            dst.write(final.tobytes())
    raw_path.unlink()
    return n, unknown


def _ids_in_range(path: Path, header_bytes: int, vocab_size: int) -> bool:
    """Every id in ``[0, vocab_size)``, read block by block (not through the memory map, which
    would leave the whole file counted in resident memory)."""
    with open(path, "rb") as f:
        f.seek(header_bytes)
        while (block := np.fromfile(f, np.int32, BLOCK_IDS)).size:
            if block.min() < 0 or block.max() >= vocab_size:
                return False
    return True


# ---------------------------------------------------------------------------------------------
# loading


def read_reports(folder: str | Path, paths: dict[str, str]) -> dict[str, tuple[bool, str]]:
    """Per split, the log line of what was read from its file (``paths``: split -> the file's
    name now; a cache is shared by files of the same contents) and whether lines were skipped."""
    meta = json.loads((Path(folder) / "meta.json").read_text())
    reports = {}
    for split, path in paths.items():
        info = meta["splits"][split]
        stats = ReadStats(path, info["records"], info["bad"], info["bad_examples"])
        line = stats.report()
        kept = info["records"] - info["bad"]
        if info["reviews"] != kept:  # data.max_train_reviews took a subset
            line += f"; {info['reviews']:,} of its {kept:,} reviews used (data.max_train_reviews)"
        reports[split] = (bool(info["bad"]), line)
    return reports


def unknown_token_share(folder: str | Path, split: str) -> float:
    """The share of a split's tokens (those the network reads) outside the vocabulary."""
    info = json.loads((Path(folder) / "meta.json").read_text())["splits"][split]
    return info["unknown_tokens"] / max(info["tokens"], 1)


def load_cache(
    folder: str | Path, max_bad_fraction: float = 1.0
) -> tuple[Vocabulary, dict[str, EncodedSplit]]:
    """Load a cache memory-mapped, after checks that catch truncated or inconsistent files."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        vocab = Vocabulary(json.loads((folder / "vocab.json").read_text()))
    except (OSError, ValueError) as e:
        raise CacheError(f"{folder}: incomplete cache ({e})") from e
    if meta.get("version") != CACHE_VERSION or meta.get("vocab_size") != len(vocab):
        raise CacheError(f"{folder}: cache of another version or vocabulary")
    splits = {}
    for split in SPLITS:
        info = meta["splits"][split]
        ids_path = folder / f"{split}.ids.npy"
        try:
            if ids_path.stat().st_size != meta["ids_sizes"][split]:
                raise CacheError(f"{ids_path}: size differs from meta.json (truncated?)")
            ids = np.load(ids_path, mmap_mode="r")
            offsets = np.load(folder / f"{split}.offsets.npy")
            labels = np.load(folder / f"{split}.labels.npy")
        except (OSError, ValueError, EOFError) as e:
            raise CacheError(f"{folder}: unreadable {split} arrays ({e})") from e
        n = info["reviews"]
        if len(labels) != n or len(offsets) != n + 1 or offsets[-1] != len(ids):
            raise CacheError(f"{folder}: {split} arrays disagree in length")
        if n and (
            np.any(np.diff(offsets) < 1) or not _ids_in_range(ids_path, ids.offset, len(vocab))
        ):
            raise CacheError(f"{folder}: {split} ids or offsets out of range")
        if info["bad"] > max_bad_fraction * info["records"]:
            raise CacheError(f"{folder}: {split} has more bad records than now allowed")
        splits[split] = EncodedSplit(ids, offsets, labels)
    return vocab, splits
