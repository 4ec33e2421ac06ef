"""TensorBoard: what a run writes, read back from its event files as TensorBoard reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lstm_sentiment.records.hparams import final_metrics, flat_hparams
from lstm_sentiment.train import train

from helpers import read_events, read_hparams


def texts(events: EventAccumulator, tag: str) -> list[str]:
    return [e.tensor_proto.string_val[0].decode() for e in events.Tensors(f"{tag}/text_summary")]


def test_flat_hparams_are_plain_values_tensorboard_takes():
    cfg = OmegaConf.create(
        {
            "model": {"_target_": "x.Y", "lr": 0.01, "scheduler": None, "emb": {"freeze": True}},
            "data": {"batch_size": 32, "tokenizer": "wordpunct", "data_dir": "/somewhere"},
            "seed": 1,
        }
    )
    assert flat_hparams(cfg) == {
        "model.lr": 0.01,
        "model.scheduler": "None",
        "model.emb.freeze": True,
        "data.batch_size": 32,
        "data.tokenizer": "wordpunct",
        "seed": 1,
    }
    assert final_metrics({"val/acc_best": 0.9, "test/acc": 0.8, "test/loss": 0.1}) == {
        "hp/val_acc_best": 0.9,
        "hp/test_acc": 0.8,
    }


def test_a_run_logs_scalars_images_text_summary_and_hparams(train_cfg):
    # a barely trained model (tiny lr) gets many reviews wrong: there is something to show
    cfg = train_cfg("trainer.max_epochs=2", "model.lr=1e-5")
    metrics, trainer = train(cfg)
    events = read_events(Path(cfg.paths.output_dir) / "tensorboard")
    tags = events.Tags()

    # scalars per step and per epoch
    steps = trainer.global_step
    assert len(events.Scalars("train/loss_step")) == steps  # log_every_n_steps=1
    for tag in ("train/loss_epoch", "val/acc", "val/acc_best", "val/loss"):
        assert len(events.Scalars(tag)) == 2, tag

    # per validation epoch (not the sanity check): a confusion matrix and a PR curve, as PNGs
    for tag in ("val/confusion_matrix", "val/pr_curve"):
        images = events.Images(tag)
        assert [i.step for i in images] == [steps // 2, steps]
        assert all(i.encoded_image_string.startswith(b"\x89PNG") for i in images)

    # misclassified reviews: words of the vocabulary, each on the wrong side of 0.5
    table = texts(events, "val/misclassified")
    assert len(table) == 2
    rows = [line.split(" | ") for line in table[-1].splitlines()[2:]]
    assert 1 <= len(rows) <= 5
    vocab = set(trainer.datamodule.vocab.itos)
    for prob, label, review in rows:
        prob, label = float(prob.strip("| ")), label.strip()
        assert (prob >= 0.5) == (label == "negative")
        assert set(review.strip(" |.").split()) - {"..."} <= vocab

    # the model summary, once
    (summary,) = texts(events, "model/summary")
    assert "RNNClassifier" in summary and "Trainable params" in summary
    assert tags["graph"] is False

    # HPARAMS: this run's settings beside its final metrics
    hparams = read_hparams(events)
    assert hparams["model.net.hidden_size"] == 16 and hparams["data.batch_size"] == 32
    assert hparams["model.lr"] == 1e-5 and hparams["model.net.rnn_type"] == "lstm"
    for name in ("val/acc_best", "val/acc", "test/acc", "test/f1"):
        logged = events.Scalars("hp/" + name.replace("/", "_"))
        assert logged[-1].value == pytest.approx(metrics[name]), name

    # and the file the sweep summary reads
    result = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert result["status"] == "ok" and result["metrics"]["test/acc"] == metrics["test/acc"]
