"""The metrics logged so far, saved in every checkpoint: a run resumed after its last epoch (killed
during its final test) still reports its ``train/*`` and ``val/*`` metrics, not the test's alone."""

from __future__ import annotations

import lightning.pytorch as pl


class CheckpointedMetrics(pl.Callback):
    """``restored``: the metrics of the checkpoint a run resumed from (empty for a new run).
    train.py adds this callback to every run; its state is a dict of floats, so checkpoints
    still load with ``weights_only=True``."""

    def __init__(self) -> None:
        self.trainer: pl.Trainer | None = None
        self.restored: dict[str, float] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict:
        if self.trainer is None:
            return {"metrics": dict(self.restored)}
        logged = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
        return {"metrics": {**self.restored, **logged}}

    def load_state_dict(self, state_dict: dict) -> None:
        self.restored = dict(state_dict.get("metrics", {}))

    def __getstate__(self) -> dict:  # ddp_spawn pickles callbacks: not the trainer with them
        return {**self.__dict__, "trainer": None}
