"""The scratch LSTM inside the classifier, gate statistics, and accuracy by review length."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lstm_sentiment.config import build
from lstm_sentiment.models.sentiment_module import SentimentModule
from lstm_sentiment.train import train

from helpers import batch_of, small_net


@pytest.mark.parametrize("bidirectional", [False, True])
def test_scratch_cell_classifier_equals_the_nn_lstm_one(bidirectional):
    torch.manual_seed(0)
    kw = dict(num_layers=2, bidirectional=bidirectional, dropout=0.0)
    reference = small_net(**kw).eval()
    scratch = small_net(cell="scratch", **kw).eval()
    scratch.load_state_dict(reference.state_dict())  # same parameter names and shapes
    ids, lengths = batch_of([5, 2, 7])
    assert torch.allclose(scratch(ids, lengths), reference(ids, lengths), atol=1e-5)


def test_scratch_cell_and_gate_recording_need_lstm():
    with pytest.raises(ValueError, match="scratch with rnn_type=lstm"):
        small_net(cell="scratch", rnn_type="gru")
    with pytest.raises(ValueError, match="record_gates needs cell=scratch"):
        small_net(record_gates=True)


def test_gate_statistics_reach_tensorboard_and_buckets_the_run_folder(train_cfg):
    cfg = train_cfg(
        "model.net.cell=scratch",
        "model.net.record_gates=true",
        "trainer.max_epochs=1",
        "callbacks.length_buckets.bounds=[10,25]",
        "data.eval_batch_size=16",  # several validation batches to average
    )
    metrics, _ = train(cfg)
    # What the callback logged is each gate's mean over the validation batches of the weights
    # the epoch ended with (last.ckpt): recomputed here from those weights and batches, without
    # the callback, so an unrecorded, swapped or wrongly averaged gate fails.
    out = Path(cfg.paths.output_dir)
    net = SentimentModule.load_from_checkpoint(out / "checkpoints" / "last.ckpt").net.eval()
    datamodule = build(cfg.data)
    datamodule.setup("fit")
    per_batch = []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            net(batch["ids"], batch["lengths"])
            per_batch.append({k: float(v) for k, v in net.gate_stats.items() if v.dim() == 0})
    assert len(per_batch) > 1
    for gate in ("input", "forget", "output"):
        expected = sum(b[f"layer0/{gate}"] for b in per_batch) / len(per_batch)
        assert metrics[f"gates/layer0/{gate}"] == pytest.approx(expected, abs=1e-5), gate
    assert len({round(metrics[f"gates/layer0/{g}"], 4) for g in ("input", "forget", "output")}) == 3
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"histograms": 0})
    events.Reload()
    assert "gates/layer0/forget_per_unit" in events.Tags()["histograms"]
    assert "gates/layer0/forget" in events.Tags()["scalars"]

    with open(out / "length_buckets.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["bucket"] for r in rows] == ["short", "medium", "long"]
    assert sum(int(r["reviews"]) for r in rows) == 200  # every test review in one bucket
    for row in rows:
        if int(row["reviews"]):
            assert metrics[f"test/acc_{row['bucket']}"] == pytest.approx(float(row["accuracy"]))
    assert "| short | 1-10 |" in (out / "length_buckets.md").read_text()
