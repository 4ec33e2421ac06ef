"""The one error layer: ``UserError`` for every error whose message says what to fix (a setting, a
file, a checkpoint, the machine), and the handler every entry point (train, eval, predict,
export, download) shares. It prints ``error: <message>`` on stderr and exits 1; any other
exception is a bug and keeps its traceback.

This module imports nothing of the project, so every module can derive its errors from it.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """An error the user fixes; its message names the file, setting or value and what to do."""


# What an OSError with these codes says (disk full, no permission, read-only disk, missing file)
# is about the machine or a path the user gave, not a bug: it is reported with its file name.
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
}


def user_message(error: BaseException) -> str | None:
    """The one line to show for a user error; None for anything else (a bug)."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS and error.filename:
        return f"{error.filename}: {error.strerror}"
    return None


def exit_on_user_error(error: BaseException) -> None:
    """Print a user error as ``error: <message>`` and exit 1; return for anything else."""
    message = user_message(error)
    if message is not None:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


@contextmanager
def user_errors_exit() -> Iterator[None]:
    """Wrap an entry point's work: a user error exits 1 with one line, a bug propagates."""
    try:
        yield
    except Exception as e:
        exit_on_user_error(e)
        raise
