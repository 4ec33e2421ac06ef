"""The token cache: what invalidates it, what it survives, and what it holds."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_sentiment.data import cache
from lstm_sentiment.data.cache import CacheError, CacheSpec, build_cache, load_cache
from lstm_sentiment.data.encoder import TextEncoder
from lstm_sentiment.data.vocab import PAD, PAD_ID, UNK, UNK_ID

from helpers import DATA_DEFAULTS, text_pipeline, write_fasttext


def make_spec(folder: Path, **kwargs) -> CacheSpec:
    """The data config's defaults, with ``kwargs``."""
    settings = {**DATA_DEFAULTS, **kwargs}
    return CacheSpec(
        str(folder / "train.ft.txt"),
        str(folder / "test.ft.txt"),
        TextEncoder(text_pipeline(tokenizer=settings["tokenizer"]), settings["max_len"]),
        settings["min_freq"],
        settings["max_vocab_size"],
        settings["file_format"],
        settings["max_train_reviews"],
        settings["split_seed"],
    )


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """Files of its own per test, so tests may rewrite them."""
    folder = tmp_path / "reviews"
    folder.mkdir()
    write_fasttext(folder / "train.ft.txt", 300, seed=1)
    write_fasttext(folder / "test.ft.txt", 100, seed=2)
    return folder


def build(spec: CacheSpec, root: Path, **kwargs) -> Path:
    kwargs = {"workers": 1, "max_bad_fraction": DATA_DEFAULTS["max_bad_fraction"], **kwargs}
    return build_cache(spec, root, progress=False, **kwargs)


def arrays(folder: Path) -> dict:
    vocab, splits = load_cache(folder)
    out = {"vocab": vocab.itos}
    for name, split in splits.items():
        out |= {f"{name}.{k}": np.array(getattr(split, k)) for k in ("ids", "offsets", "labels")}
    return out


def forbid_building(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(cache, "_build_into", fail)


def test_unchanged_inputs_load_without_rebuilding(data_dir, tmp_path, monkeypatch):
    spec = make_spec(data_dir)
    first = build(spec, tmp_path / "cache")
    forbid_building(monkeypatch)
    assert build(make_spec(data_dir), tmp_path / "cache") == first


@pytest.mark.parametrize(
    "change",
    [{"tokenizer": "treebank"}, {"min_freq": 1}, {"max_len": 20}, {"max_vocab_size": 50}],
)
def test_a_changed_setting_builds_a_new_cache(data_dir, tmp_path, change, monkeypatch):
    before = build(make_spec(data_dir), tmp_path / "cache")
    after = build(make_spec(data_dir, **change), tmp_path / "cache")
    assert after != before and before.is_dir()  # both kept: switching back costs nothing
    forbid_building(monkeypatch)
    assert build(make_spec(data_dir), tmp_path / "cache") == before
    if "max_len" in change:
        assert arrays(after)["train.offsets"][-1] < arrays(before)["train.offsets"][-1]


def test_a_changed_file_rebuilds_even_with_the_same_size_and_time(data_dir, tmp_path):
    train = data_dir / "train.ft.txt"
    before = build(make_spec(data_dir), tmp_path / "cache")
    stat = train.stat()
    text = train.read_text()
    swapped = text.replace("__label__1", "__label__X").replace("__label__2", "__label__1")
    train.write_text(swapped.replace("__label__X", "__label__2"))  # every label flipped
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert train.stat().st_size == stat.st_size
    after = build(make_spec(data_dir), tmp_path / "cache")
    assert after != before
    assert np.array_equal(arrays(after)["train.labels"], 1 - arrays(before)["train.labels"])


@pytest.mark.parametrize(
    "name", ["train.ids.npy", "test.ids.npy", "train.offsets.npy", "test.labels.npy", "vocab.json"]
)
def test_a_truncated_file_is_detected_and_rebuilt(data_dir, tmp_path, name):
    spec = make_spec(data_dir)
    folder = build(spec, tmp_path / "cache")
    good = arrays(folder)
    path = folder / name
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(CacheError):
        load_cache(folder)
    assert build(spec, tmp_path / "cache") == folder
    rebuilt = arrays(folder)
    assert all(np.array_equal(good[k], rebuilt[k]) for k in good)


def test_out_of_range_ids_are_detected(data_dir, tmp_path):
    folder = build(make_spec(data_dir), tmp_path / "cache")
    ids = np.load(folder / "train.ids.npy", mmap_mode="r+")
    ids[5] = 10**6
    ids.flush()
    del ids
    with pytest.raises(CacheError, match="out of range"):
        load_cache(folder)


def test_a_crash_mid_build_leaves_nothing_that_loads(data_dir, tmp_path, monkeypatch):
    spec = make_spec(data_dir)
    root = tmp_path / "cache"

    def crash(*args, **kwargs):  # after both splits were tokenized and written
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "_finalize_ids", crash)
    with pytest.raises(KeyboardInterrupt):
        build(spec, root)
    # no final folder, no temporary one (only the build's lock file)
    assert [p.name for p in root.iterdir()] == [f".{spec.key()}.lock"]
    monkeypatch.undo()
    assert load_cache(build(spec, root))


def test_a_killed_build_leaves_only_a_temporary_folder_that_the_next_build_removes(
    data_dir, tmp_path
):
    spec, root = make_spec(data_dir), tmp_path / "cache"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    abandoned = root / f".tmp-{spec.key()}-{dead.stdout.strip()}"
    abandoned.mkdir(parents=True)  # what SIGKILL mid-build leaves: a partial temporary folder
    (abandoned / "train.raw").write_bytes(b"\0" * 64)
    with pytest.raises(CacheError):
        load_cache(abandoned)
    with pytest.raises(CacheError):
        load_cache(root / spec.key())
    folder = build(spec, root)
    assert sorted(p.name for p in root.iterdir()) == [f".{folder.name}.lock", folder.name]


def test_vocabulary_rules(tmp_path):
    folder = tmp_path / "reviews"
    folder.mkdir()
    (folder / "train.ft.txt").write_text(
        "__label__2 good good good: twice once\n__label__1 bad: twice bad\n__label__2 :.\n"
    )
    (folder / "test.ft.txt").write_text("__label__1 good unseen once\n")
    vocab, splits = load_cache(build(make_spec(folder, min_freq=2), tmp_path / "cache"))
    assert vocab.itos[:2] == [PAD, UNK] and (PAD_ID, UNK_ID) == (0, 1)
    assert set(vocab.itos[2:]) == {"good", "twice", "bad", ":"}  # count >= 2 in train only
    assert vocab.itos[2:] == ["good", ":", "bad", "twice"]  # most frequent first, ties by token
    train, test = splits["train"], splits["test"]
    good, twice = vocab.stoi["good"], vocab.stoi["twice"]
    assert train.review(0).tolist() == [good, good, good, vocab.stoi[":"], twice, UNK_ID]
    assert test.review(0).tolist() == [good, UNK_ID, UNK_ID]  # unknown words -> _UNK, not _PAD
    assert train.review(2).tolist() == [UNK_ID]  # ":." is one wordpunct token, seen once
    assert PAD_ID not in np.asarray(train.ids) and PAD_ID not in np.asarray(test.ids)
    assert train.labels.tolist() == [1, 0, 1] and test.labels.tolist() == [0]


def test_ids_are_each_reviews_first_max_len_tokens(data_dir, tmp_path):
    from lstm_sentiment.data.reviews import read_reviews

    spec = make_spec(data_dir, max_len=8)
    vocab, splits = load_cache(build(spec, tmp_path / "cache"))
    reviews = list(read_reviews(data_dir / "test.ft.txt"))
    test = splits["test"]
    assert len(test) == len(reviews)
    for i, (label, text) in enumerate(reviews):
        assert test.review(i).tolist() == vocab.encode(spec.encoder.pipeline(text)[:8])
        assert test.labels[i] == label


def test_parallel_build_equals_serial(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CHUNK_REVIEWS", 40)  # many chunks, through 2 processes
    serial = arrays(build(make_spec(data_dir), tmp_path / "serial", workers=1))
    parallel = arrays(build(make_spec(data_dir), tmp_path / "parallel", workers=2))
    assert serial.keys() == parallel.keys()
    for key in serial:
        assert np.array_equal(serial[key], parallel[key]), key


def test_meta_records_what_was_read(data_dir, tmp_path):
    folder = build(make_spec(data_dir), tmp_path / "cache")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["splits"]["train"]["reviews"] == 300 and meta["splits"]["test"]["reviews"] == 100
    assert meta["spec_key"] == folder.name


def test_max_train_reviews_takes_a_seeded_balanced_subset(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    lines = [f"__label__{1 + (i % 3 == 0)} review number {i}: text {i}\n" for i in range(300)]
    (folder / "train.ft.txt").write_text("".join(lines))  # 100 positive, 200 negative
    (folder / "test.ft.txt").write_text("".join(lines[:20]))

    def subset(n, seed, cache):
        spec = make_spec(folder, min_freq=1, max_train_reviews=n, split_seed=seed)
        spec = dataclasses.replace(
            spec, encoder=TextEncoder(text_pipeline(replace_digits=False), 200)
        )
        vocab, splits = load_cache(build(spec, tmp_path / cache))
        train = splits["train"]
        numbers = [int(vocab.itos[train.review(i)[2]]) for i in range(len(train))]
        return numbers, train.labels.tolist()

    numbers, labels = subset(40, 0, "a")
    assert len(numbers) == 40 and labels.count(1) == 20 and labels.count(0) == 20
    assert numbers == sorted(numbers)  # file order kept
    assert all(label == (n % 3 == 0) for n, label in zip(numbers, labels, strict=True))
    assert subset(40, 0, "b")[0] == numbers  # same seed, same subset (a fresh cache)
    other = subset(40, 1, "a")[0]  # another seed: another subset, and another cache folder
    assert other != numbers and len(other) == 40
    # more than a label holds: all of it, the rest of the other label's half
    numbers, labels = subset(260, 0, "c")
    assert labels.count(1) == 100 and labels.count(0) == 130


def test_the_vocabulary_counts_the_words_past_max_len(tmp_path):
    folder = tmp_path / "reviews"
    folder.mkdir()
    # "late" appears only after the first 2 tokens of each review: cut off, but still counted
    (folder / "train.ft.txt").write_text("__label__2 good good late\n__label__1 bad bad late\n")
    (folder / "test.ft.txt").write_text("__label__1 late bad\n")
    vocab, splits = load_cache(build(make_spec(folder, max_len=2, min_freq=2), tmp_path / "c"))
    assert "late" in vocab
    assert splits["train"].review(0).tolist() == [vocab.stoi["good"]] * 2
    assert splits["test"].review(0).tolist() == [vocab.stoi["late"], vocab.stoi["bad"]]


def test_an_edit_in_the_middle_with_size_and_time_kept_rebuilds(tmp_path):
    """The cache key hashed only the first and last 64 KiB: an edit between them, with the size
    and modification time put back, reused the stale cache (issue 14 row 15)."""
    folder = tmp_path / "reviews"
    folder.mkdir()
    train = write_fasttext(folder / "train.ft.txt", 3000, seed=1)  # ~400 KB
    write_fasttext(folder / "test.ft.txt", 100, seed=2)
    before = build(make_spec(folder), tmp_path / "cache")
    data = bytearray(train.read_bytes())
    middle = data.index(b"__label__", len(data) // 2)
    assert 1 << 16 < middle < len(data) - (1 << 16)
    flipped = b"1" if data[middle + 9 : middle + 10] == b"2" else b"2"
    data[middle + 9 : middle + 10] = flipped  # one review's label flipped, same size
    stat = train.stat()
    train.write_bytes(bytes(data))
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (train.stat().st_size, train.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    after = build(make_spec(folder), tmp_path / "cache")  # in the same process: no stale memo
    assert after != before
    changed = arrays(after)["train.labels"] != arrays(before)["train.labels"]
    assert changed.sum() == 1


def test_the_same_bytes_elsewhere_reuse_the_cache(data_dir, tmp_path, monkeypatch):
    first = build(make_spec(data_dir), tmp_path / "cache")
    moved = tmp_path / "moved"
    data_dir.rename(moved)
    forbid_building(monkeypatch)
    assert build(make_spec(moved), tmp_path / "cache") == first
