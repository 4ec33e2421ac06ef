"""Read Amazon Review Polarity files, streamed, in either published form.

- fastText (the Kaggle copy): ``__label__1 <title>: <text>`` per line (1 = negative, 2 = positive);
- CSV (Xiang Zhang's original): ``"label","title","text"`` rows, labels "1"/"2".

Plain, ``.bz2`` and ``.gz`` files are read as streams; a UTF-8 byte-order mark at the start (as
Windows tools write) is skipped. A malformed record is skipped and counted; ``ReadStats.report``
says what was skipped (training logs it for every file), ``ReadStats.check`` fails the read when too
many were bad. Corrupt archives, missing and empty files raise ``ReviewFileError`` naming the file.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lstm_sentiment.data.files import HOW_TO_GET_DATA, ReviewFileError

FORMATS = ("fasttext", "csv")  # labelled review files; predict also reads plain "lines"
FASTTEXT_LABELS = {"__label__1": 0, "__label__2": 1}
CSV_LABELS = {"1": 0, "2": 1}
# Real reviews are under ~1,000 characters; a multi-megabyte "line" is a broken file, not a review.
MAX_REVIEW_CHARS = 100_000
BOM = b"\xef\xbb\xbf"  # the UTF-8 byte-order mark


@dataclass
class ReadStats:
    """What a read saw: records, bad records, and the first few bad line numbers with reasons."""

    path: str
    records: int = 0
    bad: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)

    def add_bad(self, line: int, reason: str) -> None:
        self.bad += 1
        if len(self.examples) < 5:
            self.examples.append((line, reason))

    def summary(self) -> str:
        shown = "; ".join(f"line {n}: {why}" for n, why in self.examples)
        return f"{self.path}: skipped {self.bad} of {self.records} records ({shown})"

    def report(self) -> str:
        """One line for the log, also when nothing was skipped."""
        if not self.bad:
            return f"{self.path}: {self.records:,} reviews, none skipped"
        shown = "; ".join(f"line {n}: {why}" for n, why in self.examples)
        kept = self.records - self.bad
        return f"{self.path}: {kept:,} reviews; skipped {self.bad} of {self.records} ({shown})"

    def check(self, max_bad_fraction: float) -> None:
        """Raise when nothing was usable or the bad fraction is above the limit."""
        if self.records == 0:
            raise ReviewFileError(f"{self.path}: the file holds no reviews. {HOW_TO_GET_DATA}")
        if self.bad > max_bad_fraction * self.records:
            raise ReviewFileError(
                f"{self.summary()}: more than data.max_bad_fraction={max_bad_fraction} are bad"
            )


def detect_format(path: str | Path, lines: bool = False) -> str:
    """``csv`` when the file name holds ``.csv`` (plain or compressed), else ``fasttext``; with
    ``lines=True`` (input to predict), ``lines`` when the first line has no ``__label__``."""
    if ".csv" in Path(path).name.lower():
        return "csv"
    if lines:
        with open_binary(path) as f:
            first = next((line for line in f if line.strip()), b"")
        if not first.startswith(b"__label__"):
            return "lines"
    return "fasttext"


def open_binary(path: str | Path) -> io.BufferedIOBase:
    """The file's bytes, decompressed, without a leading UTF-8 byte-order mark."""
    path = Path(path)
    if not path.is_file():
        raise ReviewFileError(f"{path}: no such file. {HOW_TO_GET_DATA}")
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    f = opener(path, "rb")  # the caller closes it
    try:
        if f.peek(len(BOM)).startswith(BOM):
            f.read(len(BOM))
    except (EOFError, OSError, zlib.error):
        pass  # a corrupt file: the read that follows reports it, naming the file
    return f


def read_reviews(
    path: str | Path, fmt: str = "auto", stats: ReadStats | None = None
) -> Iterator[tuple[int, str]]:
    """Yield ``(label, text)`` with label 0 (negative) or 1 (positive), text ``title: body``.

    Pass a ``ReadStats`` to learn what was skipped; call its ``check`` once the generator is done.
    """
    stats = stats if stats is not None else ReadStats(str(path))
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown review file format {fmt!r}: use auto or one of {FORMATS}")
    records = _fasttext_records if fmt == "fasttext" else _csv_records
    try:
        with open_binary(path) as f:
            yield from records(f, stats)
    except (EOFError, OSError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise ReviewFileError(f"{path}: no such file. {HOW_TO_GET_DATA}") from e
        raise ReviewFileError(
            f"{path}: corrupt or truncated file after {stats.records} records ({e})"
        ) from e


def _fasttext_records(f: io.BufferedIOBase, stats: ReadStats) -> Iterator[tuple[int, str]]:
    for lineno, raw in enumerate(f, 1):
        if not raw.strip():
            continue  # blank lines (a trailing newline, say) are not records
        stats.records += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            stats.add_bad(lineno, f"invalid UTF-8 at byte {e.start}")
            continue
        label, text = (line.strip().split(None, 1) + [""])[:2]  # a space or tab after the label
        if not label.startswith("__label__"):
            stats.add_bad(lineno, "no __label__ prefix")
        elif label not in FASTTEXT_LABELS:
            stats.add_bad(lineno, f"unknown label {label!r}")
        elif not text.strip():
            stats.add_bad(lineno, "empty review")
        elif len(text) > MAX_REVIEW_CHARS:
            stats.add_bad(lineno, f"review of {len(text):,} characters")
        else:
            yield FASTTEXT_LABELS[label], text


def _csv_records(f: io.BufferedIOBase, stats: ReadStats) -> Iterator[tuple[int, str]]:
    # surrogateescape keeps reading past invalid bytes; the record holding them is then skipped.
    text_stream = io.TextIOWrapper(f, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.reader(text_stream)
    csv.field_size_limit(16 * MAX_REVIEW_CHARS)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            stats.records += 1
            stats.add_bad(start, f"CSV error: {e}")
            continue
        if not row or not any(cell.strip() for cell in row):
            continue
        stats.records += 1
        if len(row) != 3:
            stats.add_bad(start, f"{len(row)} fields, expected 3 (label, title, text)")
            continue
        label, title, body = row
        text = f"{title.strip()}: {body.strip()}".replace("\\n", " ")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            stats.add_bad(start, "invalid UTF-8")
            continue
        if label.strip() not in CSV_LABELS:
            stats.add_bad(start, f"unknown label {label!r}")
        elif not (title.strip() or body.strip()):
            stats.add_bad(start, "empty review")
        elif len(text) > MAX_REVIEW_CHARS:
            stats.add_bad(start, f"review of {len(text):,} characters")
        else:
            yield CSV_LABELS[label.strip()], text


# ---------------------------------------------------------------------------------------------
# reviews to predict: every one must get its prediction, so a bad line is an error, not skipped


def read_lines(stream: io.BufferedIOBase, name: str) -> Iterator[str]:
    """Each line, stripped: one review, or ``""`` for a blank line (predict keeps its place, so
    output lines match input lines); a line that is not UTF-8 stops the read, naming it. A
    byte-order mark starting the first line is dropped."""
    for lineno, raw in enumerate(stream, 1):
        if lineno == 1:
            raw = raw.removeprefix(BOM)
        try:
            yield raw.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise ReviewFileError(f"{name}: line {lineno} is not UTF-8 (byte {e.start})") from None


def read_input_file(path: str | Path, fmt: str) -> Iterator[tuple[str, int | None]]:
    """``(text, label)`` for each review of a file to predict; label None for plain lines, and
    text ``""`` for a blank one.

    ``fmt``: ``auto`` (see ``detect_format``), ``lines``, or one of ``FORMATS``, read by the
    training reader (same ``title: body`` text).
    """
    fmt = detect_format(path, lines=True) if fmt == "auto" else fmt
    if fmt == "lines":
        with open_binary(path) as f:
            yield from ((text, None) for text in read_lines(f, str(path)))
        return
    stats = ReadStats(str(path))
    for label, text in read_reviews(path, fmt, stats):
        if stats.bad:
            break
        yield text, label
    if stats.bad:
        raise ReviewFileError(stats.summary())
