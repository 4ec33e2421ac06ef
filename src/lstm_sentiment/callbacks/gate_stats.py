"""Log the LSTM's gate activations per layer, per validation epoch (model.net.record_gates=true).

The forget gate near 1 means the cell state carries on (long-term memory); near 0, it is wiped.
Needs ``model.net.cell=scratch``, whose forward records the means (``ScratchLSTM.gate_stats``).
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics import CatMetric


class GateStats(pl.Callback):
    """Scalars ``gates/layer{k}/{input,forget,output}`` (mean over the epoch's batches) and a
    histogram of the per-unit means of each gate, so TensorBoard shows which units keep or forget.

    Each batch's means are gathered in a torchmetrics ``CatMetric``, so under DDP the epoch mean
    covers every rank's batches, not rank 0's."""

    def __init__(self) -> None:
        # a plain dict, not defaultdict(lambda): ddp_spawn pickles callbacks to its workers
        self.batch_means: dict[str, CatMetric] = {}

    def _net(self, pl_module):
        net = getattr(pl_module, "net", None)
        return net if getattr(net, "record_gates", False) else None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.batch_means.clear()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        net = self._net(pl_module)
        if net is None or trainer.sanity_checking:
            return
        for key, value in net.gate_stats.items():
            if key not in self.batch_means:
                self.batch_means[key] = CatMetric().to(pl_module.device)
            self.batch_means[key].update(value.detach().float().unsqueeze(0))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self.batch_means:
            return
        # every rank records the same keys (the same network), so every rank gathers each key
        means = {key: metric.compute().mean(0) for key, metric in sorted(self.batch_means.items())}
        for key, value in means.items():
            if value.dim() == 0:
                pl_module.log(f"gates/{key}", value.item(), on_epoch=True, sync_dist=True)
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for key, value in means.items():
                    if value.dim() == 1:
                        logger.experiment.add_histogram(f"gates/{key}", value, trainer.global_step)
