"""The one error layer: every error that says what to fix is a UserError, reported by one handler
as one line; anything else (a bug) keeps its traceback."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from lstm_sentiment.callbacks.time_estimate import TrainingTooLong
from lstm_sentiment.config import ConfigValueError
from lstm_sentiment.data.download import DownloadError
from lstm_sentiment.data.files import ReviewFileError
from lstm_sentiment.data.text import TokenizerDataMissing
from lstm_sentiment.data.vectors import EmbeddingsError
from lstm_sentiment.errors import UserError, exit_on_user_error, user_errors_exit
from lstm_sentiment.export import ExportError
from lstm_sentiment.inference import CheckpointError, InferenceError, InputError
from lstm_sentiment.models.sentiment_module import TrainingDiverged


@pytest.mark.parametrize(
    "error",
    [
        ReviewFileError,
        ConfigValueError,
        InferenceError,
        CheckpointError,
        InputError,
        ExportError,
        EmbeddingsError,
        TrainingTooLong,
        TrainingDiverged,
        TokenizerDataMissing,
        DownloadError,
    ],
)
def test_every_error_that_says_what_to_fix_is_a_user_error(error, capsys):
    with pytest.raises(SystemExit) as exit_:
        exit_on_user_error(error("data.x=1 is wrong: set data.x=2"))
    assert exit_.value.code == 1
    assert capsys.readouterr().err == "error: data.x=1 is wrong: set data.x=2\n"


@pytest.mark.parametrize(
    "bug", [KeyError("key"), IndexError(3), FloatingPointError("x"), TypeError()]
)
def test_a_bug_is_not_caught(bug):
    # LookupError and FloatingPointError were caught once, so a KeyError printed as "error: 'key'"
    with pytest.raises(type(bug)), user_errors_exit():
        raise bug


def test_a_full_disk_or_a_refused_write_is_one_line_naming_the_file(capsys):
    with pytest.raises(SystemExit), user_errors_exit():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.jsonl")
    assert capsys.readouterr().err == "error: /data/out.jsonl: No space left on device\n"
    # an OSError that names no file says nothing a user can act on: a traceback
    with pytest.raises(OSError), user_errors_exit():
        raise OSError(errno.ENOSPC, "No space left on device")


def _run_train_main_raising(error: str, tmp_path) -> subprocess.CompletedProcess:
    """``python -m lstm_sentiment.train`` whose ``train()`` raises ``error``."""
    code = (
        "import sys, lstm_sentiment.train as t\n"
        "from lstm_sentiment.config import ConfigValueError\n"
        "def boom(cfg):\n"
        f"    raise {error}\n"
        "t.train = boom\n"
        f"sys.argv = ['train', 'hydra.run.dir={tmp_path}/run']\n"
        "t.main()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_train_cli_bug_keeps_its_traceback_user_error_is_one_line(tmp_path):
    bug = _run_train_main_raising("KeyError('val/acc')", tmp_path)
    assert bug.returncode == 1
    assert "Traceback" in bug.stderr and "KeyError: 'val/acc'" in bug.stderr
    user = _run_train_main_raising("ConfigValueError('data.x=1: set data.x=2')", tmp_path)
    assert user.returncode == 1
    assert user.stderr.strip().splitlines() == ["error: data.x=1: set data.x=2"]


def test_user_error_base_is_not_a_value_error():
    # the subclasses were ValueErrors once; a bug's ValueError must not pass for a user error
    assert not issubclass(UserError, ValueError)
