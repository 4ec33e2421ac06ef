"""Where the review files are: their names, the folders searched in order, where `make data` puts
the full set, and what to tell a user who has none. Nothing else in the project knows these."""

from __future__ import annotations

import os
from pathlib import Path

from lstm_sentiment.errors import UserError

# src/lstm_sentiment/data/files.py -> the project root (an editable install keeps this true)
PROJECT_ROOT = Path(__file__).resolve().parents[3]

# A split's file when none is named: the Kaggle fastText copy, then Xiang Zhang's CSV copy.
NAMES = {
    "train": ("train.ft.txt.bz2", "train.ft.txt", "train.ft.txt.gz", "train.csv", "train.csv.gz"),
    "test": ("test.ft.txt.bz2", "test.ft.txt", "test.ft.txt.gz", "test.csv", "test.csv.gz"),
}

ENV_VAR = "REVIEWS_DIR"
# `make data` (python -m lstm_sentiment.data.download) downloads into DOWNLOAD_DIR; the archive
# unpacks to FULL_SET_DIR, holding FULL_SET_FILES (Xiang Zhang's CSV copy).
DOWNLOAD_DIR = PROJECT_ROOT / "data"
FULL_SET_DIR = DOWNLOAD_DIR / "amazon_review_polarity_csv"
FULL_SET_FILES = ("train.csv", "test.csv")
FULL_SET_SIZES = {"train": 3_600_000, "test": 400_000}  # reviews per file
# the real 9,459 / 1,984 review sample the repository ships (data/sample/README.md)
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"

HOW_TO_GET_DATA = (
    "Get the data with `make data` (downloads the full set), or point the project at a folder "
    f"holding train/test files with `data.data_dir=DIR` or the {ENV_VAR} environment variable."
)


class ReviewFileError(UserError):
    """A review file that cannot be used: missing, empty, corrupt, or too many bad lines."""


def default_data_dir() -> Path:
    """The review folder, in this order: ``$REVIEWS_DIR`` when set (even when it does not exist,
    so the error names it), else the full set once `make data` fetched it, else the sample."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return FULL_SET_DIR if FULL_SET_DIR.is_dir() else SAMPLE_DIR


def find_review_file(data_dir: str | Path, split: str, name: str | None = None) -> Path:
    """``data_dir/name``, or the first of the split's usual names there."""
    folder = Path(data_dir)
    names = (name,) if name else NAMES[split]
    for candidate in names:
        if (folder / candidate).is_file():
            return folder / candidate
    raise ReviewFileError(
        f"no review file {' or '.join(names)} in {folder.resolve()}. {HOW_TO_GET_DATA}"
    )


def describe_data_dir(data_dir: str | Path) -> str:
    """The folder and why it is the one read: what a run logs at its start."""
    folder = Path(data_dir).resolve()
    if os.environ.get(ENV_VAR) and folder == Path(os.environ[ENV_VAR]).resolve():
        why = f"${ENV_VAR}"
    elif folder == FULL_SET_DIR.resolve():
        why = "the full set, downloaded by `make data`"
    elif folder == SAMPLE_DIR.resolve():
        why = "the 9,459/1,984-review sample shipped in data/sample; `make data` gets the full set"
    else:
        why = "data.data_dir"
    return f"{folder} ({why})"
