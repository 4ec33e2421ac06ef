"""Log the LSTM's gate activations per layer, per validation epoch (model.net.record_gates=true).

The forget gate near 1 means the cell state carries on (long-term memory); near 0, it is wiped.
Needs ``model.net.cell=scratch``, whose forward records the means (``ScratchLSTM.gate_stats``).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger


class GateStats(pl.Callback):
    """Scalars ``gates/layer{k}/{input,forget,output}`` (mean over the epoch) and a histogram of
    the per-unit means of each gate, so TensorBoard shows which units keep or forget."""

    def __init__(self) -> None:
        # a plain dict, not defaultdict(lambda): ddp_spawn pickles callbacks to its workers
        self.sums: dict[str, torch.Tensor] = {}
        self.batches = 0

    def _net(self, pl_module):
        net = getattr(pl_module, "net", None)
        return net if getattr(net, "record_gates", False) else None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.sums.clear()
        self.batches = 0

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        net = self._net(pl_module)
        if net is None or trainer.sanity_checking:
            return
        for key, value in net.gate_stats.items():
            self.sums[key] = self.sums.get(key, 0) + value.detach().float().cpu()
        self.batches += 1

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self.batches:
            return
        means = {key: total / self.batches for key, total in self.sums.items()}
        for key, value in means.items():
            if value.dim() == 0:
                pl_module.log(f"gates/{key}", value.item(), on_epoch=True)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for key, value in means.items():
                    if value.dim() == 1:
                        logger.experiment.add_histogram(f"gates/{key}", value, trainer.global_step)
