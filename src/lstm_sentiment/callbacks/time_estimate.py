"""Say early how long the training will take, and refuse a run far beyond the budget.

The full Amazon set on a CPU is days of training: this callback times the first training steps,
logs the estimate for the whole fit, and stops with a one-line error naming the ways out when the
estimate is above ``max_hours``, instead of letting such a run start silently.
"""

from __future__ import annotations

import logging
import time

import lightning.pytorch as pl

from lstm_sentiment.errors import UserError

log = logging.getLogger(__name__)


class TrainingTooLong(UserError):
    """The estimated training time is above ``max_hours``: the user must choose."""


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours / 24:.1f} days"


class TrainingTimeEstimate(pl.Callback):
    """After ``measure_steps`` optimizer steps (the first ``warmup_steps`` not timed), log the
    estimated time of all ``trainer.estimated_stepping_batches`` steps; raise
    ``TrainingTooLong`` if that is above ``max_hours`` (``null``: never)."""

    def __init__(
        self, max_hours: float | None = 6.0, measure_steps: int = 25, warmup_steps: int = 5
    ):
        if measure_steps <= warmup_steps:
            raise ValueError("measure_steps must be larger than warmup_steps")
        self.max_hours, self.measure_steps, self.warmup_steps = (
            max_hours,
            measure_steps,
            warmup_steps,
        )
        self.steps, self.started = 0, 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1
        if self.steps == self.warmup_steps:
            self.started = time.perf_counter()
        if self.steps != self.measure_steps:
            return
        per_step = (time.perf_counter() - self.started) / (self.measure_steps - self.warmup_steps)
        total = trainer.estimated_stepping_batches
        left = per_step * max(total - trainer.global_step, 0)
        log.info(
            "training time estimate: %s for %d steps (%.0f ms a step, validation not counted)",
            duration(left),
            total,
            1000 * per_step,
        )
        if self.max_hours is not None and left > 3600 * self.max_hours:
            raise TrainingTooLong(
                f"training would take about {duration(left)} here ({total:,} steps of "
                f"{1000 * per_step:.0f} ms), more than callbacks.time_estimate.max_hours="
                f"{self.max_hours}: train on a subset (data.max_train_reviews=N, or "
                "experiment=full_cpu), on a GPU (trainer=gpu), with fewer epochs "
                "(trainer.max_epochs), or allow it (callbacks.time_estimate.max_hours=null)"
            )
