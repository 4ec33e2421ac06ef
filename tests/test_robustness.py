"""Bad input, crashes, misconfiguration and numerical faults: clear errors, no lost work."""

from __future__ import annotations

import bz2
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import MissingMandatoryValue, OmegaConf

from lstm_sentiment.atomic_checkpoint import AtomicCheckpointIO
from lstm_sentiment.config import (
    ConfigValueError,
    DataSchema,
    build,
    check_ranges,
    yaml_settings,
)
from lstm_sentiment.data.reviews import ReadStats, ReviewFileError, read_reviews
from lstm_sentiment.train import TrainingDiverged, train

from helpers import compose_config, data_module, write_fasttext

# ---------------------------------------------------------------------------------- bad input


def test_empty_review_and_huge_line_are_skipped(tmp_path):
    path = tmp_path / "train.ft.txt"
    huge = "word " * 1_000_000  # a 5 MB "line"
    path.write_text(f"__label__1 \n__label__2 {huge}\n__label__2 fine: ok\n")
    stats = ReadStats(str(path))
    assert list(read_reviews(path, stats=stats)) == [(1, "fine: ok")]
    assert stats.examples == [(1, "empty review"), (2, "review of 4,999,999 characters")]


def test_truncated_bz2_is_an_error_naming_the_file(tmp_path):
    whole = bz2.compress(("__label__1 bad: it broke\n" * 5000).encode())
    path = tmp_path / "train.ft.txt.bz2"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ReviewFileError, match=r"train.ft.txt.bz2: corrupt or truncated"):
        list(read_reviews(path))


def test_empty_file_fails_the_run_with_the_file_named(tmp_path):
    write_fasttext(tmp_path / "train.ft.txt", 50, seed=0)
    (tmp_path / "test.ft.txt").write_text("")
    dm = data_module(tmp_path, tmp_path / "c", progress=False)
    with pytest.raises(ReviewFileError, match=r"test.ft.txt: the file holds no reviews"):
        dm.prepare_data()


def test_too_many_bad_lines_fail_the_run_and_leave_no_cache(tmp_path):
    write_fasttext(tmp_path / "train.ft.txt", 50, seed=0)
    with open(tmp_path / "train.ft.txt", "a") as f:
        f.write("garbage\n" * 5)
    write_fasttext(tmp_path / "test.ft.txt", 20, seed=1)
    cache = tmp_path / "c"
    strict = data_module(tmp_path, cache, progress=False)
    with pytest.raises(ReviewFileError, match=r"skipped 5 of 55 .*line 51: no __label__ prefix"):
        strict.prepare_data()
    assert not [p for p in cache.iterdir() if not p.name.startswith(".")]
    lenient = data_module(tmp_path, cache, progress=False, max_bad_fraction=0.1)
    lenient.setup("fit")
    assert len(lenient.datasets["train"]) + len(lenient.datasets["val"]) == 50


def test_cli_error_is_one_clear_line_without_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstm_sentiment.train",
            f"paths.data_dir={tmp_path}/none",
            f"paths.log_dir={tmp_path}/logs",
            f"paths.cache_dir={tmp_path}/cache",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "no review file" in result.stderr and "make data" in result.stderr
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- misconfiguration


def test_wrong_type_fails_at_composition_naming_the_key(tmp_path, tiny_data_dir):
    with pytest.raises(ConfigCompositionException) as err:
        compose_config("train", tmp_path, tiny_data_dir, ["model.net.hidden_size=big"])
    assert "model.net.hidden_size" in str(err.value) + str(err.value.__cause__)
    with pytest.raises(ConfigCompositionException, match="data.batch_sizes"):
        compose_config("train", tmp_path, tiny_data_dir, ["data.batch_sizes=3"])


def test_a_setting_missing_from_the_yaml_fails_naming_it():
    # the schema holds types only: a default the YAML lacks is not quietly filled in
    settings = {**yaml_settings("data/amazon_polarity"), "data_dir": "d", "cache_dir": "c",
                "_target_": "lstm_sentiment.data.datamodule.ReviewDataModule"}  # fmt: skip
    del settings["bucket"]
    node = OmegaConf.merge(OmegaConf.structured(DataSchema), settings)
    with pytest.raises(MissingMandatoryValue, match="bucket"):
        build(node)


@pytest.mark.parametrize(
    "override, key, allowed",
    [
        ("data.tokenizer=spacy", "data.tokenizer", "wordpunct, treebank, punkt"),
        ("data.val_source=test", "data.val_source", "train, test_half"),
        ("data.file_format=tsv", "data.file_format", "auto, fasttext, csv"),
        ("model.net.rnn_type=transformer", "model.net.rnn_type", "lstm, gru, rnn"),
        ("model.scheduler=warmup", "model.scheduler", "none, cosine, plateau"),
    ],
)
def test_a_value_outside_its_choices_fails_at_composition(
    override, key, allowed, tmp_path, tiny_data_dir
):
    with pytest.raises(ConfigCompositionException) as err:
        compose_config("train", tmp_path, tiny_data_dir, [override])
    message = str(err.value) + str(err.value.__cause__)
    assert key in message and f"expected one of [{allowed}]" in message


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.net.hidden_size=0", "model.net.hidden_size"),
        ("data.val_fraction=1.5", "data.val_fraction"),
        ("model.net.dropout=-0.1", "model.net.dropout"),
    ],
)
def test_out_of_range_values_fail_before_any_work(override, key, tmp_path, tiny_data_dir):
    cfg = compose_config("train", tmp_path, tiny_data_dir, [override])
    with pytest.raises(ConfigValueError, match=key):
        check_ranges(cfg)
    with pytest.raises(ConfigValueError, match=key):
        train(cfg)
    assert not (tmp_path / "cache").exists()  # failed before reading any data


@pytest.mark.slow
@pytest.mark.parametrize(
    "sweep, key",
    [
        ("model.hidden_sizee=8,16", "model.hidden_sizee"),
        ("model.net.rnn_type=gru,cnn", "model.net.rnn_type"),
    ],
)
def test_sweep_over_a_missing_key_fails_before_training(sweep, key, tmp_path, tiny_data_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstm_sentiment.train",
            "-m",
            sweep,
            f"paths.data_dir={tiny_data_dir}",
            f"paths.log_dir={tmp_path}/logs",
            f"paths.cache_dir={tmp_path}/cache",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert key in result.stderr
    assert not list(tmp_path.rglob("*.ckpt")) and not (tmp_path / "cache").exists()


# ---------------------------------------------------------------------------- numerical faults


class PoisonWeights(pl.Callback):
    """Turns the embedding to NaN before one step, as a diverging run would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                module.net.embedding.weight.fill_(float("nan"))


def test_nan_loss_stops_training_naming_the_step(train_cfg):
    cfg = train_cfg(
        f"+callbacks.poison._target_={__name__}.PoisonWeights", "+callbacks.poison.step=3"
    )
    with pytest.raises(TrainingDiverged, match="train loss is nan at global step 3"):
        train(cfg)


# ------------------------------------------------------------------- checkpoints: atomic, safe


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def crash_mid_write(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt  # the process dies halfway through the write

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_checkpoints_hold_no_pickled_code(train_cfg):
    _, trainer = train(train_cfg("trainer.max_epochs=1", "test=false"))
    ckpt = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert {"state_dict", "hyper_parameters", "ReviewDataModule"} <= set(ckpt)


# --------------------------------------------------------------------------- crash and resume


def _train_cmd(run_dir: Path, data_dir: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lstm_sentiment.train",
        f"hydra.run.dir={run_dir}",
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={cache}",
        "data.progress=false",
        "data.preprocess_workers=1",
        "model.net.embedding_dim=16",
        "model.net.hidden_size=32",
        "trainer.max_epochs=4",
        "callbacks.early_stopping=null",
        "callbacks.rich_progress_bar=null",
        "trainer.enable_progress_bar=false",
        "test=false",
        *extra,
    ]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_fasttext(data / "train.ft.txt", 3000, seed=1)
    write_fasttext(data / "test.ft.txt", 100, seed=2)
    cache = tmp_path / "cache"
    # PYTHONPATH: the runs count their own optimizer steps with tests/helpers.py's StepCounter
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(Path(__file__).parent)}
    counted = tmp_path / "steps.txt"
    count = ["+callbacks.steps._target_=helpers.StepCounter", f"+callbacks.steps.path={counted}"]

    whole = tmp_path / "whole"
    subprocess.run(
        _train_cmd(whole, data, cache), check=True, env=env, timeout=600, capture_output=True
    )

    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        _train_cmd(run, data, cache, *count),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(last, weights_only=True)
    assert killed_at["epoch"] < 3

    subprocess.run(
        _train_cmd(run, data, cache, *count, "ckpt_path=last"),
        check=True,
        env=env,
        timeout=600,
        capture_output=True,
    )
    resumed = torch.load(last, weights_only=True)
    reference = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == reference["global_step"] > killed_at["global_step"]
    # the resumed process ran only the steps left (a restart from scratch, which ignored
    # ckpt_path, would end at the same global step after running them all)
    assert int(counted.read_text()) == reference["global_step"] - killed_at["global_step"]
    best = "val/acc"

    def score(ckpt):
        callbacks = ckpt["callbacks"]
        key = next(k for k in callbacks if k.startswith("ModelCheckpoint"))
        return float(callbacks[key]["best_model_score"])

    assert score(resumed) == pytest.approx(score(reference), abs=0.05), best
