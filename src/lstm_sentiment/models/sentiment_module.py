"""The LightningModule: loss, metrics and optimizer around the RNNClassifier."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score

from lstm_sentiment.config import Scheduler
from lstm_sentiment.errors import UserError
from lstm_sentiment.models.components.rnn_classifier import RNNClassifier

SCHEDULERS = (None, *(s.value for s in Scheduler))


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the learning rate or clipping must change."""


def stage_metrics(stage: str) -> MetricCollection:
    # Fed probabilities: thresholds at 0.5 for acc/F1, and AUROC ranks them.
    return MetricCollection(
        {"acc": BinaryAccuracy(), "f1": BinaryF1Score(), "auroc": BinaryAUROC()},
        prefix=f"{stage}/",
    )


class SentimentModule(pl.LightningModule):
    """Binary review sentiment with ``BCEWithLogitsLoss`` (the recipe's sigmoid + ``BCELoss`` is
    less stable: it saturates where the logit form does not).

    Every constructor argument is a plain number or string (or a dict of them: ``net``, the
    network's own arguments; ``embeddings``, pretrained vectors), saved as a hyperparameter, so the
    checkpoint rebuilds the network on its own and loads with ``weights_only=True``.
    Gradient clipping is the Trainer's job (``trainer.gradient_clip_val``).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        net: dict,
        lr: float,
        weight_decay: float,
        scheduler: str | None,
        embeddings: dict,
    ):
        super().__init__()
        if scheduler not in SCHEDULERS:
            raise ValueError(f"model.scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        self.save_hyperparameters()
        # the network's arguments, one dict: a checkpoint rebuilds it from hparams["net"] alone
        self.net = RNNClassifier(vocab_size=vocab_size, **net)
        # Pretrained vectors are copied in by train.py (they need the vocabulary); freezing follows
        # the hparam here, so a reloaded checkpoint stays frozen.
        self.net.embedding.weight.requires_grad_(not embeddings["freeze"])
        self.loss_fn = nn.BCEWithLogitsLoss()
        # one metric object per stage, as torchmetrics wants ("train" can't be a ModuleDict key)
        self.train_metrics = stage_metrics("train")
        self.val_metrics, self.val_loss = stage_metrics("val"), MeanMetric()
        self.test_metrics, self.test_loss = stage_metrics("test"), MeanMetric()
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # in the checkpoint: a resumed run keeps its best

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits [B] (apply ``sigmoid`` for the positive probability)."""
        return self.net(ids, lengths)

    def _step(self, batch: dict[str, torch.Tensor], stage: str):
        """Loss and positive probabilities of a batch; updates the stage's metrics."""
        logits = self(batch["ids"], batch["lengths"])
        loss = self.loss_fn(logits, batch["labels"])
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"{stage} loss is {loss.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}): lower model.lr, keep trainer.gradient_clip_val on"
            )
        probs = torch.sigmoid(logits.detach())
        getattr(self, f"{stage}_metrics").update(probs, batch["labels"].long())
        return loss, probs

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch, "train")
        size = len(batch["labels"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size)
        return loss

    def on_train_epoch_end(self) -> None:
        # Computed here, not logged as Metric objects per step: each `self.log` of a metric
        # object walks its state (~2 ms a step on CPU, 1-2% of a training step; see README
        # Performance). `compute` already syncs across DDP ranks; sync_dist as for val/acc_best.
        if any(metric.update_count for metric in self.train_metrics.values()):  # 0 batches: none
            self.log_dict(self.train_metrics.compute(), sync_dist=True)
        self.train_metrics.reset()

    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        loss, probs = self._step(batch, stage)
        mean_loss, metrics = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_metrics")
        mean_loss.update(loss, weight=len(batch["labels"]))
        self.log(f"{stage}/loss", mean_loss, on_epoch=True, prog_bar=stage == "val")
        self.log_dict(metrics, on_epoch=True, prog_bar=stage == "val")
        return {"probs": probs}  # for callbacks (confusion matrix, accuracy by review length)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        return self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # a few batches before training: not an epoch
            return
        self.val_acc_best(self.val_metrics["acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "cosine":
            steps = self.trainer.estimated_stepping_batches
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }
        if hp.scheduler == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=0.5, patience=1
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"},
            }
        return optimizer
