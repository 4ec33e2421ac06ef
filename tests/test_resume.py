"""Resuming a run from its folder alone (the README's command): the run's own settings, only the
steps left, nothing of its record rewritten, and a run with nothing left to train says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from lstm_sentiment.train import train

from helpers import step_counter


def _train(run: Path, *overrides: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lstm_sentiment.train", f"hydra.run.dir={run}", *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _record(run: Path) -> dict[str, bytes]:
    """The first process's record: what no later process may change."""
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in [*run.glob(".hydra/*"), run / "metrics.json"]
    }


def test_readme_resume_command_keeps_the_runs_settings_and_record(tmp_path, tiny_data_dir):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}  # helpers.StepCounter
    steps = tmp_path / "steps.txt"
    run = tmp_path / "run"
    first = _train(
        run,
        f"paths.data_dir={tiny_data_dir}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "data.progress=false",
        "data.preprocess_workers=1",
        "model.net.hidden_size=12",  # not the default: a resume without it must still use it
        "model.net.embedding_dim=8",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "callbacks.rich_progress_bar=null",
        "+callbacks.steps._target_=helpers.StepCounter",
        f"+callbacks.steps.path={steps}",
        env=env,
    )
    assert first.returncode == 0, first.stderr
    record = _record(run)
    # train.log holds the run's log: folder and config first, the data read, Lightning's lines
    log = (run / "train.log").read_text()
    for line in (
        "run folder: ",
        "config:\n",
        "hidden_size: 12",
        "data folder: ",
        "train.ft.txt: 600 reviews, none skipped",
        "GPU available: ",
        "metrics, in ",
    ):
        assert line in log, line  # fmt: skip
    steps_per_epoch = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)[
        "global_step"
    ]

    # the README's command on a finished run: nothing to train, and it says so
    again = _train(run, "ckpt_path=last", env=env)
    assert again.returncode == 0, again.stderr
    assert "nothing left to train" in again.stdout and "Traceback" not in again.stderr
    assert _record(run) == record
    assert (run / "resumes" / "1" / ".hydra" / "overrides.yaml").is_file()  # its own record
    assert (run / "train.log").read_text().startswith(log)  # appended to, not rewritten
    assert "nothing left to train" in (run / "train.log").read_text()

    # more epochs: trained with the run's settings (hidden size 12), only the epoch left
    more = _train(run, "ckpt_path=last", "trainer.max_epochs=2", env=env)
    assert more.returncode == 0, more.stderr
    assert int(steps.read_text()) == steps_per_epoch
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2 * steps_per_epoch
    assert last["hyper_parameters"]["net"]["hidden_size"] == 12
    assert _record(run) == record
    later = json.loads((run / "resumes" / "2" / "metrics.json").read_text())
    assert later["status"] == "ok" and {"test/acc", "val/acc_best", "train/loss_epoch"} <= set(
        later["metrics"]
    )
    effective = (run / "resumes" / "2" / ".hydra" / "config.yaml").read_text()
    assert "hidden_size: 12" in effective and "max_epochs: 2" in effective

    # a setting that shapes the model is refused, naming it, before any work
    other = _train(run, "ckpt_path=last", "model.net.hidden_size=32", env=env)
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    assert other.stderr.startswith("error: model.net.hidden_size=32 differs from the 12")
    # a new run into the folder of another would overwrite its checkpoints: refused
    fresh = _train(run, env=env)
    assert fresh.returncode == 1 and "holds a run already" in fresh.stderr
    assert _record(run) == record


def test_resume_after_the_last_epoch_tests_and_records_all_metrics(train_cfg):
    """A run killed during its final test: its last.ckpt holds every epoch, no metrics.json."""
    cfg = train_cfg("trainer.max_epochs=1", "test=false")
    metrics, _ = train(cfg)
    result = Path(cfg.paths.output_dir) / "metrics.json"
    result.unlink()
    resumed, trainer = train(
        train_cfg(
            "trainer.max_epochs=1",
            "ckpt_path=last",
            "+callbacks.steps._target_=helpers.StepCounter",
        )
    )
    assert step_counter(trainer).steps == 0  # nothing left to train
    written = json.loads(result.read_text())["metrics"]
    assert {"test/acc", "test/f1"} <= set(written)  # tested now
    for key in ("val/acc_best", "train/loss_epoch", "train/acc"):  # carried by the checkpoint
        assert written[key] == metrics[key], key


def test_a_resumed_run_keeps_its_best_validation_accuracy(train_cfg):
    """val/acc_best is the best over every epoch of the run, those before the resume too: the
    checkpoint carries it, and the resumed fit starts from it rather than from nothing."""
    cfg = train_cfg("trainer.max_epochs=2", "test=false")
    first, _ = train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    states = [ckpt[k] for k in ("state_dict", "current_model_state") if k in ckpt]
    assert all(float(st["val_acc_best.max_value"]) == first["val/acc_best"] for st in states[-1:])
    # a best no epoch of this run can reach (accuracy <= 1): only a carried best gives it
    for state in states:
        state["val_acc_best.max_value"] = torch.tensor(1.5)
    torch.save(ckpt, last)
    resumed, _ = train(train_cfg("trainer.max_epochs=3", "ckpt_path=last", "test=false"))
    assert resumed["val/acc_best"] == 1.5
