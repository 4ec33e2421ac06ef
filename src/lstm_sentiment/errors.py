"""The errors a user fixes (a setting, a file, a checkpoint), reported by every entry point as one
line on stderr and exit code 1; any other exception keeps its traceback."""

from __future__ import annotations

import sys

from lstm_sentiment.callbacks.time_estimate import TrainingTooLong
from lstm_sentiment.config import ConfigValueError
from lstm_sentiment.data.files import ReviewFileError
from lstm_sentiment.data.vectors import EmbeddingsError
from lstm_sentiment.inference import InferenceError

# FloatingPointError: a NaN loss (lower the learning rate); LookupError: missing NLTK data.
USER_ERRORS = (
    ReviewFileError,
    ConfigValueError,
    InferenceError,
    EmbeddingsError,
    FloatingPointError,
    LookupError,
    TrainingTooLong,
)


def exit_on_user_error(error: BaseException) -> None:
    """Print a user error as ``error: <message>`` and exit 1; return for anything else."""
    if isinstance(error, USER_ERRORS):
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
