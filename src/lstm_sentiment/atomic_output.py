"""Outputs of ``predict`` and ``export`` written whole or not at all, and never over an input.

A file is written to a temporary name beside its target and renamed over it only when complete,
so an error halfway (a bad input line, a full disk, Ctrl-C) leaves the target as it was; and an
output that names an input (the checkpoint, the reviews) is refused before anything is read.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from lstm_sentiment.inference import InferenceError


class OutputError(InferenceError):
    """An output path that would destroy an input, or a file that cannot be written."""


def refuse_overwrite(output: str | Path, inputs: dict[str, str | Path | None]) -> None:
    """Fail when ``output`` is one of ``inputs`` (``{"checkpoint": path, ...}``): the same file
    by any name (a relative path, a symlink, a hard link)."""
    for what, path in inputs.items():
        if path and same_file(output, path):
            raise OutputError(
                f"output {output} is the {what} ({path}): writing it would destroy it; "
                "choose another output path"
            )


def same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): they cannot be one file
        return False


class AtomicOutput:
    """``with AtomicOutput(path) as out: out.write(...)``: the text (or, ``binary=True``, bytes)
    goes to a temporary file beside ``path``, renamed over it when the block ends without an
    exception and deleted when it does not. Entering creates the temporary file, so an output
    folder that is missing or not writable fails before any work is done.

    A target that exists and is no regular file (``/dev/stdout``, a FIFO) is written directly.
    Errors writing are ``OutputError`` naming the target.
    """

    def __init__(self, path: str | Path, binary: bool = False):
        self.path = Path(path)
        self.binary = binary
        self.tmp: Path | None = None

    def __enter__(self) -> AtomicOutput:
        mode = "wb" if self.binary else "w"
        encoding = None if self.binary else "utf-8"
        try:
            if self.path.is_dir():
                raise OutputError(f"output {self.path} is a folder: give a file name")
            if self.path.exists() and not self.path.is_file():
                self.file = open(self.path, mode, encoding=encoding)  # a device or pipe
                return self
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
            )
        except OSError as e:
            raise self._error(e) from None
        self.tmp = Path(tmp)
        self.file = os.fdopen(fd, mode, encoding=encoding)
        return self

    def write(self, data: str | bytes) -> None:
        try:
            self.file.write(data)
        except OSError as e:
            raise self._error(e) from None

    def flush(self) -> None:
        """Everything written so far onto the disk (a full disk fails here, as an OutputError):
        call it on each of several outputs that belong together before their blocks end."""
        try:
            self.file.flush()
            if self.tmp is not None:
                os.fsync(self.file.fileno())
        except OSError as e:
            raise self._error(e) from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp is None:  # written directly
            self.file.close()
            return
        try:
            if exc_type is None:
                self.flush()
                self.file.close()
                os.chmod(self.tmp, _mode_for(self.path))
                os.replace(self.tmp, self.path)
        except OSError as e:
            raise self._error(e) from None
        finally:
            with contextlib.suppress(OSError):  # a close after a failed write may fail again
                self.file.close()
            self.tmp.unlink(missing_ok=True)  # after os.replace there is nothing left to delete

    def _error(self, e: OSError) -> OutputError:
        return OutputError(
            f"{self.path}: cannot write it ({e.strerror or e}); nothing was written there"
        )


def _mode_for(path: Path) -> int:
    """The permissions a plain ``open(path, "w")`` would leave (mkstemp's are owner-only)."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
