"""Test accuracy by review length: does the network hold long context? (experiment=memory)"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import lightning.pytorch as pl
from torchmetrics import SumMetric


class LengthBucketAccuracy(pl.Callback):
    """Splits the test reviews at ``bounds`` tokens (after truncation to ``data.max_len``) into
    short / medium / long, logs ``test/acc_<bucket>`` and writes ``length_buckets.md`` + ``.csv``
    to the run folder.

    The counts are torchmetrics sums, so under DDP they cover every rank's reviews, not rank 0's.
    """

    def __init__(self, output_dir: str, bounds: tuple[int, int] = (50, 120)):
        if not 0 < bounds[0] < bounds[1]:
            raise ValueError(f"bounds must be two increasing positive lengths, got {bounds}")
        self.output_dir, self.bounds = Path(output_dir), tuple(bounds)
        self.reviews: dict[str, SumMetric] = {}
        self.correct: dict[str, SumMetric] = {}

    def names(self) -> list[tuple[str, int, int | None]]:
        low, high = self.bounds
        return [("short", 1, low), ("medium", low + 1, high), ("long", high + 1, None)]

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        names = [name for name, _, _ in self.names()]
        self.reviews = {name: SumMetric().to(pl_module.device) for name in names}
        self.correct = {name: SumMetric().to(pl_module.device) for name in names}

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        lengths = batch["lengths"].to(pl_module.device)
        correct = (outputs["probs"] >= 0.5) == batch["labels"].bool()
        for name, low, high in self.names():
            mask = lengths >= low if high is None else (lengths >= low) & (lengths <= high)
            self.reviews[name].update(mask.sum().float())
            self.correct[name].update(correct[mask].sum().float())

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        rows = []
        for name, low, high in self.names():
            n = int(self.reviews[name].compute())  # summed over all ranks
            acc = float(self.correct[name].compute()) / n if n else float("nan")
            if n:
                # the same value on every rank: sync_dist only keeps Lightning from warning
                pl_module.log(f"test/acc_{name}", acc, sync_dist=True)
            span = f"{low}+" if high is None else f"{low}-{high}"
            rows.append({"bucket": name, "tokens": span, "reviews": n, "accuracy": acc})
        if trainer.is_global_zero:
            self._write(rows, rnn=pl_module.hparams.get("net", {}).get("rnn_type", "?"))

    def _write(self, rows: list[dict], rnn: str) -> None:
        table = [
            f"Test accuracy by review length ({rnn})",
            "",
            "| bucket | tokens | reviews | accuracy |",
            "|---|---|---|---|",
            *(
                f"| {r['bucket']} | {r['tokens']} | {r['reviews']} | {r['accuracy']:.4f} |"
                for r in rows
            ),
        ]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for name, text in (
            ("length_buckets.md", "\n".join(table) + "\n"),
            ("length_buckets.csv", buffer.getvalue()),
        ):
            tmp = self.output_dir / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.output_dir / name)  # atomic: a reader never sees half a table
