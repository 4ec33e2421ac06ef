"""Sweeps (Optuna and grid) through the real command line, their summary, and Hydra + DDP."""

from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, read_write

from lstm_sentiment.config import ConfigValueError
from lstm_sentiment.records.sweep_summary import read_trials, write_summary
from lstm_sentiment.records.trials import check_one_process_per_trial, write_job_result

from helpers import read_events, read_hparams


def fake_job(sweep: Path, num: int, overrides: list[str], **result) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    if result:
        write_job_result(job, **result)


def test_summary_ranks_trials_best_first_and_failed_last(tmp_path):
    shared = ["experiment=small", "data.progress=false"]
    fake_job(tmp_path, 0, ["model.lr=0.001", *shared], metrics={"val/acc_best": 0.7, "x/y": 1})
    fake_job(tmp_path, 1, ["model.lr=0.1", *shared], error="FloatingPointError: loss is nan")
    fake_job(tmp_path, 2, ["model.lr=0.003", *shared], metrics={"val/acc_best": 0.9})
    fake_job(tmp_path, 3, ["model.lr=0.01", *shared])  # died before writing metrics.json
    sweep_overrides = ["model.lr=0.001,0.1,0.003,0.01", *shared]

    markdown = write_summary(tmp_path, "val/acc_best", "maximize", sweep_overrides)

    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    # only what the sweep varied, not what every trial shared; metrics but not other scalars
    assert list(rows[0]) == ["job", "status", "model.lr", "val/acc_best", "error"]
    assert [(r["job"], r["status"]) for r in rows] == [
        ("2", "ok"),
        ("0", "ok"),
        ("1", "failed"),
        ("3", "failed"),
    ]
    assert float(rows[0]["val/acc_best"]) == 0.9 and rows[2]["error"].startswith("FloatingPoint")
    assert "no metrics.json" in rows[3]["error"]
    assert (tmp_path / "summary.md").read_text() == markdown
    assert markdown.splitlines()[2].startswith("| 2 | ok | 0.003 | 0.9000 |")

    worst_first = write_summary(tmp_path, "val/acc_best", "minimize", sweep_overrides)
    assert worst_first.splitlines()[2].startswith("| 0 | ok |")


def test_write_job_result_replaces_the_file_whole(tmp_path):
    write_job_result(tmp_path, metrics={"val/acc": 0.5, "path": "not a number"})
    write_job_result(tmp_path, error="boom")
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    fake_job(tmp_path / "sweep", 0, ["a=1"], metrics={"val/acc": 0.5, "path": "x"})
    (trial,) = read_trials(tmp_path / "sweep")
    assert trial.metrics == {"val/acc": 0.5} and trial.overrides == {"a": "1"}


def test_a_sweep_refuses_strategies_that_rerun_the_script(train_cfg):
    ddp = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, logger=False)
    spawn = pl.Trainer(strategy="ddp_spawn", accelerator="cpu", devices=2, logger=False)
    cfg = train_cfg()
    check_one_process_per_trial(ddp)  # a single run: ddp is fine
    sweep_cfg = copy.deepcopy(cfg)
    with read_write(sweep_cfg.hydra):
        sweep_cfg.hydra.mode = "MULTIRUN"
    HydraConfig.instance().set_config(sweep_cfg)
    try:
        check_one_process_per_trial(spawn)  # forks from this process: fine in a sweep
        with pytest.raises(ConfigValueError, match="sweep on one device"):
            check_one_process_per_trial(ddp)
    finally:
        HydraConfig.instance().set_config(cfg)


# -- the real command line, on tiny data --------------------------------------------------------


def run_train(
    tmp_path: Path, data_dir: Path, *overrides: str, multirun: bool = False
) -> subprocess.CompletedProcess:
    """``python -m lstm_sentiment.train`` at the small budget, shrunk further, run in tmp_path
    (so a stray relative output folder would show up there)."""
    tiny = [
        "experiment=small",
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        "data.progress=false",
        "data.preprocess_workers=1",
        "callbacks.rich_progress_bar=null",
        "++trainer.enable_model_summary=false",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=5",
        "++trainer.limit_test_batches=2",
    ]
    cmd = [sys.executable, "-m", "lstm_sentiment.train", *(["-m"] * multirun), *tiny, *overrides]
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def only_child(folder: Path) -> Path:
    (child,) = folder.iterdir()
    return child


def assert_trial_in_tensorboard(job_dir: Path, row: dict, params: list[str]) -> None:
    """The trial's event files hold its hyperparameters and the metrics the summary shows."""
    events = read_events(job_dir / "tensorboard")
    hparams = read_hparams(events)
    for param in params:
        expected = yaml.safe_load(row[param])  # the override as written: 8, True, 0.0012, cosine
        if isinstance(expected, bool | int | float):  # TensorBoard keeps numbers (and bools)
            assert hparams[param] == pytest.approx(float(expected)), param
        else:
            assert hparams[param] == expected, param
    for metric in ("val/acc_best", "test/acc"):
        logged = events.Scalars("hp/" + metric.replace("/", "_"))[-1].value
        assert logged == pytest.approx(float(row[metric]))


@pytest.mark.slow
def test_optuna_sweep_continues_past_a_failed_trial_and_summarizes(tmp_path, tiny_data_dir):
    # the real search space, with tiny sizes, and a dropout choice that fails its trials when
    # they start (out of range; a value outside a choice would fail the sweep at composition);
    # with this seed TPE's random start draws ok, failing, ok: the study must go on past trial 1
    proc = run_train(
        tmp_path,
        tiny_data_dir,
        "hparams_search=lstm_optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.seed=7",
        "model.net.hidden_size=choice(8, 16)",
        "model.net.embedding_dim=choice(8, 16)",
        "model.net.dropout=choice(0.1, 1.5)",
    )  # no -m: the search config sets hydra.mode=MULTIRUN
    sweep = only_child(tmp_path / "logs" / "train" / "multiruns")
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert "Sweep summary" in proc.stdout and (sweep / "summary.md").is_file()
    assert sorted(r["job"] for r in rows) == ["0", "1", "2"]
    params = [
        "model.lr",
        "model.net.hidden_size",
        "model.net.num_layers",
        "model.net.dropout",
        "model.net.embedding_dim",
        "model.net.bidirectional",
        "data.batch_size",
    ]
    assert list(rows[0])[: 2 + len(params) + 1] == ["job", "status", *params, "val/acc_best"]
    for row in rows:
        assert row["status"] == ("failed" if row["model.net.dropout"] == "1.5" else "ok"), row
    statuses = [r["status"] for r in sorted(rows, key=lambda r: int(r["job"]))]
    assert statuses == ["ok", "failed", "ok"], "the sampler's draws changed: pick another seed"
    ok = [r for r in rows if r["status"] == "ok"]
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]  # best first, failed last
    assert float(ok[0]["val/acc_best"]) >= float(ok[1]["val/acc_best"])
    assert "model.net.dropout" in rows[-1]["error"]
    for row in ok:
        assert_trial_in_tensorboard(sweep / row["job"], row, params)
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == pytest.approx(float(ok[0]["val/acc_best"]))


@pytest.mark.slow
def test_grid_sweep_summarizes_both_points(tmp_path, tiny_data_dir):
    run_train(tmp_path, tiny_data_dir, "model.net.hidden_size=8,16", multirun=True)
    sweep = only_child(tmp_path / "logs" / "train" / "multiruns")
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert list(rows[0])[:4] == ["job", "status", "model.net.hidden_size", "val/acc_best"]
    assert sorted(r["model.net.hidden_size"] for r in rows) == ["16", "8"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for row in rows:
        assert_trial_in_tensorboard(sweep / row["job"], row, ["model.net.hidden_size"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "logs"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "trainer",
    [
        ["trainer=ddp_sim"],  # ddp_spawn: workers forked from this process
        ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"],  # re-runs the command
    ],
    ids=["ddp_spawn", "ddp"],
)
def test_a_ddp_single_run_makes_one_output_folder(tmp_path, tiny_data_dir, trainer):
    run_train(tmp_path, tiny_data_dir, *trainer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "logs"]  # no ./outputs
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["train"]
    assert [p.name for p in (tmp_path / "logs" / "train").iterdir()] == ["runs"]
    run = only_child(tmp_path / "logs" / "train" / "runs")
    assert (run / "metrics.json").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    hparams = read_hparams(read_events(run / "tensorboard"))
    assert hparams["model.net.hidden_size"] == 32  # experiment=small
