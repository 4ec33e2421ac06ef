"""Checkpoints written atomically: a kill mid-save never leaves a truncated ``.ckpt`` behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lstm_sentiment.errors import UserError


class CheckpointWriteError(UserError):
    """A checkpoint the disk refused (full, over quota, file too large)."""


class _Sink:
    """The file ``torch.save`` writes to, remembering the OSError a write raised: torch reports
    it as a bare RuntimeError ("unexpected pos ..."), which says nothing of a full disk."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` writes the final path in place; this writes a temporary
    file in the same folder, flushes it to disk, then renames it over the final path (a rename is
    atomic on POSIX), so ``last.ckpt`` is always either the old or the new checkpoint."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options=None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        sink = None
        try:
            with os.fdopen(fd, "wb") as f:
                sink = _Sink(f)
                torch.save(checkpoint, sink)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            Path(tmp).unlink(missing_ok=True)
            refused = sink.error if sink and sink.error else e
            if isinstance(refused, OSError) and refused.errno is not None:
                free = shutil.disk_usage(path.parent).free / (1 << 20)
                raise CheckpointWriteError(
                    f"cannot write checkpoint {path} ({refused.strerror}; {free:,.0f} MB free "
                    "there): the checkpoints written before are whole; free space, then resume "
                    "with ckpt_path=last in the same run folder"
                ) from None
            raise
