"""TensorBoard beyond scalars: per validation epoch a confusion matrix and a precision-recall
curve as images and the most confidently misclassified reviews as text; the model summary once."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.model_summary import ModelSummary
from torchmetrics.classification import BinaryConfusionMatrix, BinaryPrecisionRecallCurve

CLASS_NAMES = ["negative", "positive"]


class TensorBoardExtras(pl.Callback):
    """Needs a ``TensorBoardLogger`` among the trainer's loggers; does nothing without one.

    It reads the probabilities ``validation_step`` returns, so it costs no extra forward pass.
    The confusion matrix and the curve cover
    every rank's batches (torchmetrics gathers them); the misclassified reviews are rank 0's.
    """

    def __init__(self, num_misclassified: int = 5, max_words: int = 60, pr_thresholds: int = 200):
        self.num_misclassified, self.max_words = num_misclassified, max_words
        self.confusion = BinaryConfusionMatrix()
        # binned: constant memory however large the validation split
        self.pr_curve = BinaryPrecisionRecallCurve(thresholds=pr_thresholds)
        self._worst: list[
            tuple[float, float, int, torch.Tensor]
        ] = []  # (confidence, p, label, ids)

    @staticmethod
    def _writer(trainer: pl.Trainer):
        """The SummaryWriter on global rank 0, else None."""
        if not trainer.is_global_zero:
            return None
        tb = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        return tb.experiment if tb else None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = self._writer(trainer)
        if writer is not None:
            summary = str(ModelSummary(pl_module, max_depth=3))
            # indented: Markdown shows it as preformatted text, columns aligned
            writer.add_text("model/summary", "    " + summary.replace("\n", "\n    "), 0)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.confusion.to(pl_module.device).reset()
        self.pr_curve.to(pl_module.device).reset()
        self._worst = []

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if trainer.sanity_checking:
            return
        probs = outputs["probs"].float()  # validation_step's own forward pass, not a second one
        labels = batch["labels"].long()
        self.confusion.update(probs, labels)
        self.pr_curve.update(probs, labels)
        if trainer.is_global_zero and self.num_misclassified > 0:
            self._keep_worst(probs, labels, batch)

    def _keep_worst(self, probs: torch.Tensor, labels: torch.Tensor, batch: dict) -> None:
        wrong = ((probs >= 0.5).long() != labels).nonzero().flatten()
        confidence = (probs[wrong] - 0.5).abs()
        top = wrong[confidence.argsort(descending=True)[: self.num_misclassified]]
        for i in top.tolist():
            ids = batch["ids"][i, : int(batch["lengths"][i])].cpu()
            self._worst.append((abs(probs[i].item() - 0.5), probs[i].item(), labels[i].item(), ids))
        self._worst = sorted(self._worst, key=lambda w: -w[0])[: self.num_misclassified]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # compute() on every rank: it gathers the other ranks' counts
        confusion, curve = self.confusion.compute(), self.pr_curve.compute()
        writer = self._writer(trainer)
        if writer is None:
            return
        step = trainer.global_step
        fig, _ = self.confusion.plot(confusion, labels=CLASS_NAMES)
        writer.add_figure("val/confusion_matrix", fig, step)
        fig, _ = self.pr_curve.plot(curve, score=True)
        writer.add_figure("val/pr_curve", fig, step)
        text = self._misclassified_markdown(trainer)
        if text:
            writer.add_text("val/misclassified", text, step)

    def _misclassified_markdown(self, trainer: pl.Trainer) -> str:
        vocab = getattr(trainer.datamodule, "vocab", None)
        if vocab is None or not self._worst:
            return ""
        lines = ["| p(positive) | label | review |", "|---|---|---|"]
        for _, prob, label, ids in self._worst:
            words = [vocab.itos[i] for i in ids.tolist()]
            text = " ".join(words[: self.max_words]) + (
                " ..." if len(words) > self.max_words else ""
            )
            lines.append(f"| {prob:.3f} | {CLASS_NAMES[label]} | {text.replace('|', '&#124;')} |")
        return "\n".join(lines)
