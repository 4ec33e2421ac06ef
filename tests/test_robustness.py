"""Bad input, crashes, misconfiguration and numerical faults: clear errors, no lost work."""

from __future__ import annotations

import bz2
import errno
import os
import shutil
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

from lstm_sentiment import preflight
from lstm_sentiment.atomic_checkpoint import AtomicCheckpointIO
from lstm_sentiment.config import (
    ConfigValueError,
    DataSchema,
    build,
    check_ranges,
    yaml_settings,
)
from lstm_sentiment.data import cache
from lstm_sentiment.data.reviews import ReadStats, ReviewFileError, read_reviews
from lstm_sentiment.data.text import TokenizerDataMissing
from lstm_sentiment.errors import UserError
from lstm_sentiment.models.sentiment_module import TrainingDiverged
from lstm_sentiment.train import train

from helpers import compose_config, data_module, write_fasttext

COUNT_STEPS = "+callbacks.steps._target_=helpers.StepCounter"

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


# ------------------------------------ data and settings no classifier can learn from (row 9)


def _reviews(folder: Path, train: list[str], test_n: int = 100) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "train.ft.txt").write_text("".join(train))
    write_fasttext(folder / "test.ft.txt", test_n, seed=2)
    return folder


def _no_run_record(cfg) -> None:
    out = Path(cfg.paths.output_dir)
    assert not (out / "metrics.json").exists() and not list(out.rglob("*.ckpt"))


@pytest.mark.parametrize(
    "case, message",
    [
        ("min_freq", "no word occurs data.min_freq=1000000 times, so the vocabulary holds only"),
        ("one class", "the train split of .* holds 5.. reviews \\(positive only\\)"),
        ("one review", "the train split of .* holds 0 reviews: a classifier needs"),
    ],
)
def test_data_or_settings_that_train_nothing_fail_in_one_line(case, message, tmp_path):
    data = tmp_path / "data"
    overrides = []
    if case == "one class":
        _reviews(data, [f"__label__2 great {i}: love it\n" for i in range(600)])
    elif case == "one review":
        _reviews(data, ["__label__2 great: love it\n"])
    else:
        write_fasttext(_reviews(data, []) / "train.ft.txt", 300, seed=1)
        overrides = ["data.min_freq=1000000"]
    cfg = compose_config("train", tmp_path, data, overrides)
    with pytest.raises(UserError, match=message):
        train(cfg)
    _no_run_record(cfg)  # never "status": "ok" on untrained weights


@pytest.mark.parametrize(
    "override", ["trainer.max_epochs=0", "+trainer.max_steps=0", "+trainer.limit_train_batches=0"]
)
def test_settings_that_train_nothing_fail_before_any_data_is_read(train_cfg, tmp_path, override):
    key = override.lstrip("+").split("=")[0]
    with pytest.raises(ConfigValueError, match=rf"{key}=0 is invalid: it must be"):
        train(train_cfg(override))
    assert not (tmp_path / "cache").exists()


def test_a_one_class_test_file_and_mostly_unknown_words_are_warned_about(tmp_path, caplog):
    data = tmp_path / "data"
    # every review: three words of its own (unknown at min_freq 2), then three shared ones
    own = ["".join(chr(97 + int(d)) for d in str(i)) for i in range(400)]  # letters: no digits
    train_lines = [f"__label__{1 + i % 2} q{w} x{w} z{w}: {('bad', 'good')[i % 2]} it\n"
                   for i, w in enumerate(own)]  # fmt: skip
    data.mkdir()
    (data / "train.ft.txt").write_text("".join(train_lines))
    (data / "test.ft.txt").write_text("__label__2 good it\n" * 50)
    cfg = compose_config("train", tmp_path, data, ["trainer.max_epochs=1", "test=false"])
    with caplog.at_level("WARNING"):
        train(cfg)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("50% of the training tokens are unknown" in w for w in warned), warned
    assert any("the test split of" in w and "(positive only)" in w for w in warned), warned


# ---------------------------------------- checks that need no data, before tokenizing (12, 13)


def test_an_unwritable_run_folder_fails_before_tokenizing(train_cfg, tmp_path):
    # a file where the run folder should be (root may write anywhere: chmod would not stop it)
    (tmp_path / "blocked").write_text("a user's file")
    cfg = train_cfg()
    cfg.paths.output_dir = str(tmp_path / "blocked" / "run")
    with pytest.raises(ConfigValueError, match=r"cannot write to .*blocked/run .*hydra.run.dir"):
        train(cfg)
    assert not (tmp_path / "cache").exists()
    assert (tmp_path / "blocked").read_text() == "a user's file"


def test_a_full_disk_fails_before_tokenizing(train_cfg, tmp_path, monkeypatch):
    full = shutil.disk_usage(tmp_path)._replace(free=5 * preflight.MB)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: full)
    with pytest.raises(ConfigValueError, match=r"has 5 MB free; a run needs about 64 MB"):
        train(train_cfg())
    assert not list((tmp_path / "cache").glob("*"))


def test_a_disk_too_small_for_the_checkpoints_fails_before_training(train_cfg, monkeypatch):
    room = shutil.disk_usage("/")._replace(free=100 * preflight.MB)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: room)
    cfg = train_cfg("model.net.hidden_size=600", COUNT_STEPS)
    with pytest.raises(ConfigValueError, match=r"checkpoints take about 1\d\d MB"):
        train(cfg)


def test_a_full_disk_while_caching_is_one_line(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "_finalize_ids", disk_full)
    write_fasttext(tmp_path / "train.ft.txt", 50, seed=0)
    write_fasttext(tmp_path / "test.ft.txt", 20, seed=1)
    dm = data_module(tmp_path, tmp_path / "c", progress=False, preprocess_workers=1)
    with pytest.raises(ReviewFileError, match=r"cannot write the token cache in .*/c \(No space"):
        dm.prepare_data()


def test_a_checkpoint_the_disk_refuses_is_one_line_and_the_old_one_stays(tmp_path):
    """A real refused write (a file-size limit, as a full disk refuses it) in a subprocess."""
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)
    code = (
        "import resource, signal, torch\n"
        "from lstm_sentiment.atomic_checkpoint import AtomicCheckpointIO\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
        f"AtomicCheckpointIO().save_checkpoint({{'w': torch.ones(100_000)}}, {str(path)!r})\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "CheckpointWriteError: cannot write checkpoint" in run.stderr
    assert (
        "File too large" in run.stderr and "the checkpoints written before are whole" in run.stderr
    )
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_gpu_asked_for_on_a_machine_without_one_fails_before_tokenizing(
    train_cfg, tmp_path, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigValueError, match=r"trainer.accelerator=gpu, but torch sees no CUDA"):
        train(train_cfg("trainer=gpu"))
    assert not (tmp_path / "cache").exists()


def test_punkt_without_its_data_fails_before_tokenizing(train_cfg, tmp_path, monkeypatch):
    import nltk

    def not_installed(resource, *args, **kwargs):
        raise LookupError(resource)

    monkeypatch.setattr(nltk.data, "find", not_installed)
    # hydra's instantiate wraps it in an InstantiationException: config.make unwraps it
    with pytest.raises(TokenizerDataMissing, match=r"nltk.downloader punkt_tab"):
        train(train_cfg("data.tokenizer=punkt"))
    assert not list((tmp_path / "cache").glob("*"))


# ------------------------------------------------ tokenizer workers die with their parent (11)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is left


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_tokenizer_workers_die_with_their_parent(tmp_path, how):
    data = tmp_path / "data"
    data.mkdir()
    write_fasttext(data / "train.ft.txt", 40_000, seed=1)  # seconds of treebank tokenizing
    write_fasttext(data / "test.ft.txt", 100, seed=2)
    cmd = [
        *_train_cmd(tmp_path / "run", data, tmp_path / "cache"),
        "data.preprocess_workers=2",
        "data.tokenizer=treebank",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 300
        workers: list[int] = []
        while len(workers) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)  # 2 tokenizing workers and the resource tracker
            workers = _children(proc.pid)
        assert len(workers) >= 3, "no tokenizer workers seen"
        time.sleep(1)  # mid-file
        if how == "Ctrl-C":  # a terminal's Ctrl-C reaches the whole foreground process group
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(getattr(signal, how))
        proc.wait(timeout=60)
        deadline = time.time() + 20
        while any(map(_alive, workers)) and time.time() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in workers if _alive(pid)], f"orphaned after {how}"
    finally:
        for pid in workers if "workers" in locals() else []:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
