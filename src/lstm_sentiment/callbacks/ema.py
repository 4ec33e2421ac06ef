"""Validate, checkpoint and test an exponential moving average of the weights (``callbacks=ema``).

A small network on a few thousand reviews swings from one epoch to the next: the average of the
last few hundred steps' weights is steadier, and the epoch the checkpoint keeps is less a matter
of luck. Lightning's ``WeightAveraging`` does the work (it swaps the average in for validation,
saves it as the checkpoint's ``state_dict`` and keeps the raw weights for resuming); this only
supplies the average.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class WarmupEMA:
    """``avg_fn`` of ``torch.optim.swa_utils.AveragedModel``: after ``n`` updates the average
    keeps ``min(decay, (1 + n) / (10 + n))`` of itself, so early epochs are not dragged towards
    the random initial weights. A class, not a closure: ``ddp_spawn`` pickles callbacks."""

    def __init__(self, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay}")
        self.decay = decay

    def __call__(self, averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor):
        keep = torch.clamp((1 + n) / (10 + n), max=self.decay).to(averaged.dtype)
        # a step towards the current weights: exactly none for weights that did not move (a
        # frozen embedding stays bit for bit what it was)
        return averaged + (current - averaged) * (1 - keep)


class EMA(WeightAveraging):
    """``WeightAveraging`` with ``WarmupEMA(decay)``, updated after every optimizer step."""

    def __init__(self, decay: float):
        super().__init__(avg_fn=WarmupEMA(decay), use_buffers=True)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        # Resuming a fit restores both the raw weights and the average. Testing a checkpoint
        # (train's test of the best epoch, after fit) must use its state_dict, the average:
        # WeightAveraging would load the raw weights over it.
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
