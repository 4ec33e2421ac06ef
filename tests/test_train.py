"""End-to-end: composed configs, fit -> test -> eval, resume, and DDP on 2 CPU processes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from lstm_sentiment.callbacks.time_estimate import TrainingTooLong
from lstm_sentiment.config import CONFIG_DIR, ConfigValueError, build, instantiate_all
from lstm_sentiment.eval import evaluate
from lstm_sentiment.models.sentiment_module import SentimentModule
from lstm_sentiment.train import optimized_value, train

from helpers import compose_config, read_events, step_counter


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override",
    [f"{g}={o}" for g in ("data", "model", "trainer", "callbacks", "logger") for o in options(g)]
    + [f"debug={o}" for o in options("debug")]
    + [f"experiment={o}" for o in options("experiment")],
)
def test_every_config_composes_and_instantiates(override, tmp_path, tiny_data_dir):
    cfg = compose_config("train", tmp_path, tiny_data_dir, [override])
    datamodule = build(cfg.data)
    build(cfg.model, vocab_size=100)
    instantiate_all(cfg.get("callbacks"))
    instantiate_all(cfg.get("logger"))
    # GPU/DDP configs are checked for their keys here; this machine has no GPU to build them on
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        with open_dict(cfg):
            cfg.trainer.accelerator = "cpu"
            cfg.trainer.devices = 1
            cfg.trainer.pop("strategy", None)
    instantiate(cfg.trainer)
    assert datamodule.batch_size > 0


def test_eval_config_composes(tmp_path, tiny_data_dir):
    cfg = compose_config("eval", tmp_path, tiny_data_dir, ["ckpt_path=x.ckpt"])
    assert cfg.ckpt_path == "x.ckpt" and "model" not in cfg


def test_fast_dev_run(train_cfg):
    metrics, _ = train(train_cfg("debug=fdr"))
    assert {"train/loss_epoch", "val/acc", "test/acc", "test/f1", "test/auroc"} <= set(metrics)


def test_fit_test_then_eval_reproduces_test_metrics(train_cfg, tmp_path, tiny_data_dir):
    cfg = train_cfg("trainer.max_epochs=3")
    metrics, trainer = train(cfg)
    best = trainer.checkpoint_callback.best_model_path
    assert best and Path(best).is_file()
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()
    assert metrics["val/acc_best"] >= metrics["val/acc"] - 1e-6
    assert metrics["test/acc"] > 0.7  # the tiny synthetic set is learnable
    assert optimized_value(metrics, "val/acc_best") == metrics["val/acc_best"]
    with pytest.raises(ConfigValueError, match="not logged"):
        optimized_value(metrics, "val/nope")

    # other text settings than training's (max_len cuts every review here; treebank splits
    # "2019." and ":" otherwise) are replaced by the checkpoint's: the same metrics again
    for text_settings in ([], ["data.max_len=5"], ["data.tokenizer=treebank"]):
        eval_cfg = compose_config(
            "eval", tmp_path / "eval", tiny_data_dir, [f"ckpt_path={best}", *text_settings]
        )
        with open_dict(eval_cfg):
            eval_cfg.data.cache_dir = cfg.data.cache_dir
        reproduced = evaluate(eval_cfg)
        for key in ("test/acc", "test/f1", "test/auroc", "test/loss"):
            assert reproduced[key] == pytest.approx(metrics[key], abs=1e-4), (text_settings, key)
    # the checkpoint carries the vocabulary and loads without pickled code
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert ckpt["ReviewDataModule"]["vocab"][:2] == ["_PAD", "_UNK"]


def test_eval_cli_writes_its_metrics_and_log(tiny_checkpoint, tiny_data_dir, tmp_path):
    run = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, "-m", "lstm_sentiment.eval", f"ckpt_path={tiny_checkpoint}",
         f"hydra.run.dir={run}", f"paths.data_dir={tiny_data_dir}",
         f"paths.cache_dir={tmp_path / 'cache'}", "data.progress=false"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert {"test/acc", "test/f1", "test/auroc", "test/loss"} <= set(metrics)
    log = (run / "eval.log").read_text()
    assert f"ckpt_path: {tiny_checkpoint}" in log and "test.ft.txt: 200 reviews" in log
    assert f"metrics, in {run / 'metrics.json'}: " in log


def test_eval_refuses_a_checkpoint_of_another_vocabulary(train_cfg, tmp_path, tiny_data_dir):
    _, trainer = train(train_cfg("trainer.max_epochs=1"))
    best = trainer.checkpoint_callback.best_model_path
    eval_cfg = compose_config(
        "eval", tmp_path / "eval", tiny_data_dir, [f"ckpt_path={best}", "data.max_vocab_size=10"]
    )
    with pytest.raises(ConfigValueError, match="another vocabulary"):
        evaluate(eval_cfg)


COUNT_STEPS = "+callbacks.steps._target_=helpers.StepCounter"


def test_resume_from_last_checkpoint_runs_only_the_steps_left(train_cfg):
    cfg = train_cfg("trainer.max_epochs=1", "test=false", COUNT_STEPS)
    _, first = train(cfg)
    steps_per_epoch = first.global_step
    assert step_counter(first).steps == steps_per_epoch > 0
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0
    # same run folder, ckpt_path=last: this run folder's last.ckpt
    resumed_cfg = train_cfg("trainer.max_epochs=3", "test=false", "ckpt_path=last", COUNT_STEPS)
    _, resumed = train(resumed_cfg)
    assert resumed.current_epoch == 3
    assert resumed.global_step == 3 * steps_per_epoch
    # the resumed process ran the two epochs left, not three from scratch
    assert step_counter(resumed).steps == 2 * steps_per_epoch


@pytest.mark.slow
def test_ddp_sim_trains_on_two_processes_and_syncs_metrics(train_cfg, tmp_path, tiny_data_dir):
    cfg = train_cfg(
        "trainer=ddp_sim",
        "trainer.max_epochs=3",  # a model that tells reviews apart: its accuracy varies by subset
        "data.eval_batch_size=50",  # the 200 test reviews: 2 batches per rank, none repeated
        "model.net.cell=scratch",
        "model.net.record_gates=true",
    )
    metrics, trainer = train(cfg)
    assert trainer.world_size == 2
    # Synced metrics are those of all 200 test reviews: what one process measures on the whole
    # test split. Rank 0 alone has 100 of them (and its accuracy, buckets and gates differ).
    eval_cfg = compose_config(
        "eval",
        tmp_path / "eval",
        tiny_data_dir,
        [f"ckpt_path={trainer.checkpoint_callback.best_model_path}"],
    )
    with open_dict(eval_cfg):
        eval_cfg.data.cache_dir = cfg.data.cache_dir
    alone = evaluate(eval_cfg)
    assert 0.6 < metrics["test/acc"] < 1 and metrics["test/f1"] > 0
    for key in ("test/acc", "test/f1", "test/auroc", "test/loss"):
        assert metrics[key] == pytest.approx(alone[key], abs=1e-6), key
    with open(Path(cfg.paths.output_dir) / "length_buckets.csv") as f:
        assert sum(int(row["reviews"]) for row in csv.DictReader(f)) == 200
    # the gates: the mean over both ranks' validation batches (one each), recomputed here
    net = SentimentModule.load_from_checkpoint(
        Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    ).net.eval()
    datamodule = build(cfg.data)
    datamodule.setup("fit")
    means = []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():  # one process: both batches
            net(batch["ids"], batch["lengths"])
            means.append(float(net.gate_stats["layer0/forget"]))
    assert len(means) == 2 and abs(means[0] - means[1]) > 1e-4  # rank 0's alone would differ
    assert metrics["gates/layer0/forget"] == pytest.approx(sum(means) / 2, abs=1e-5)
    # the per-unit histogram, written by rank 0 alone, holds both ranks' batches too
    events = read_events(Path(cfg.paths.output_dir) / "tensorboard")
    last = events.Histograms("gates/layer0/forget_per_unit")[-1].histogram_value
    assert last.sum / last.num == pytest.approx(sum(means) / 2, abs=1e-5)


def test_a_run_over_the_time_budget_stops_early_saying_how_long(train_cfg, caplog):
    budget = ["callbacks.time_estimate.measure_steps=4", "callbacks.time_estimate.warmup_steps=1"]
    cfg = train_cfg(*budget, "trainer.max_epochs=50", "callbacks.time_estimate.max_hours=1e-6")
    with pytest.raises(TrainingTooLong, match=r"training would take about .*max_hours=1e-06"):
        train(cfg)
    # within the budget the estimate is logged and training goes on to the end
    cfg = train_cfg(*budget, "callbacks.time_estimate.max_hours=null", "test=false")
    with caplog.at_level("INFO"):
        _, trainer = train(cfg)
    assert "training time estimate:" in caplog.text
    assert trainer.current_epoch == cfg.trainer.max_epochs
