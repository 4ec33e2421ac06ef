"""A checkpoint is checked on load, the same way by every entry point (train's ``ckpt_path``,
eval, predict, export), before any data is read: archive CRCs, no pickled code, our keys, a
network that fits (README "Failure behaviour", rows 5, 13 and 14)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lstm_sentiment import export as export_cli
from lstm_sentiment import inference
from lstm_sentiment import predict as predict_cli
from lstm_sentiment.config import CONFIG_DIR
from lstm_sentiment.eval import evaluate
from lstm_sentiment.inference import CheckpointError, load_predictor
from lstm_sentiment.train import train

from helpers import compose_config, flip_bytes_inside

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENTRY_POINTS = ["predict", "export", "eval", "train"]


def serving_cfg(name: str, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(name, overrides=list(overrides))


def run_entry_point(entry: str, ckpt: Path | None, tmp_path: Path, data_dir: Path) -> None:
    """``entry``'s pure function on ``ckpt`` (None: no ckpt_path given), as its CLI calls it."""
    given = [f"ckpt_path={ckpt}"] if ckpt else []
    if entry == "predict":
        predict_cli.predict(serving_cfg("predict", *given), ["great product"], None, io.StringIO())
    elif entry == "export":
        export_cli.export(serving_cfg("export", *given, f"output={tmp_path / 'model.onnx'}"))
    elif entry == "eval":
        evaluate(compose_config("eval", tmp_path, data_dir, given))
    else:
        train(compose_config("train", tmp_path, data_dir, given))


class MakesFolder:
    """Pickles as a call to ``os.mkdir``: code that loading with weights_only=False would run."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


# -------------------------------------------------------------------- row 5: flipped bytes


def test_flipped_bytes_load_silently_without_the_crc_check(tiny_checkpoint, tmp_path):
    """Why the check exists: torch.load reads the damaged copy without a word, other weights."""
    flipped = flip_bytes_inside(tiny_checkpoint, tmp_path / "flipped.ckpt")
    assert flipped.stat().st_size == tiny_checkpoint.stat().st_size
    good = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]
    bad = torch.load(flipped, weights_only=True)["state_dict"]
    assert any(not torch.equal(good[k], bad[k]) for k in good)
    inference.check_archive(tiny_checkpoint)  # the intact file passes
    with pytest.raises(CheckpointError, match=r"archive/data/\d+ fails its CRC-32 check"):
        inference.check_archive(flipped)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_refuses_a_damaged_checkpoint(
    entry, tiny_checkpoint, tmp_path, tiny_data_dir
):
    flipped = flip_bytes_inside(tiny_checkpoint, tmp_path / "flipped.ckpt")
    with pytest.raises(CheckpointError, match=r"flipped.ckpt: damaged checkpoint: .* CRC-32"):
        run_entry_point(entry, flipped, tmp_path, tiny_data_dir)
    assert not (tmp_path / "cache").exists()  # refused before any data was read
    assert not (tmp_path / "model.onnx").exists()


# ------------------------------------------------------------------- row 14: pickled code


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_names_the_blocked_global(
    entry, tiny_checkpoint, tmp_path, tiny_data_dir
):
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    marker = tmp_path / "the payload ran"
    ckpt["hyper_parameters"]["note"] = MakesFolder(marker)
    torch.save(ckpt, tmp_path / "payload.ckpt")
    with pytest.raises(CheckpointError) as refused:
        run_entry_point(entry, tmp_path / "payload.ckpt", tmp_path, tiny_data_dir)
    message = str(refused.value)
    assert "refused: loading it would import or run posix.mkdir;" in message
    assert "weights_only" not in message  # no advice to load it unsafely
    assert not marker.exists() and not (tmp_path / "cache").exists()


# --------------------------------------------------- row 13: a bad ckpt_path, or none at all


def _bad_checkpoint(kind: str, good: Path, tmp: Path) -> tuple[Path, str]:
    """A checkpoint file of ``kind`` and what the error must say about it."""
    path = tmp / f"{kind}.ckpt"
    if kind == "missing":
        return path, "no such checkpoint file"
    if kind == "text":
        path.write_text("epoch 3, val/acc 0.91\n" * 20)
        return path, "not a readable PyTorch checkpoint"
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        return path, "not a readable PyTorch checkpoint (corrupt, truncated"
    # another architecture: hyperparameters that do not fit the weights saved beside them
    ckpt = torch.load(good, weights_only=True)
    ckpt["hyper_parameters"]["net"]["hidden_size"] *= 2
    torch.save(ckpt, path)
    return path, "a checkpoint of another model type (Error(s) in loading state_dict"


@pytest.mark.parametrize("kind", ["missing", "text", "truncated", "another architecture"])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_bad_ckpt_path_fails_before_any_data_is_read(
    entry, kind, tiny_checkpoint, tmp_path, tiny_data_dir
):
    path, message = _bad_checkpoint(kind, tiny_checkpoint, tmp_path)
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{path}: {message}")):
        run_entry_point(entry, path, tmp_path, tiny_data_dir)
    assert not (tmp_path / "cache").exists()


def test_resuming_another_network_names_what_differs(tiny_checkpoint, tmp_path, tiny_data_dir):
    """An intact checkpoint of another shape than model.net.* (the tiny model is one-way)."""
    cfg = compose_config(
        "train",
        tmp_path,
        tiny_data_dir,
        [f"ckpt_path={tiny_checkpoint}", "model.net.hidden_size=24"],
    )
    with pytest.raises(CheckpointError, match="trained with another network") as refused:
        train(cfg)
    assert "hidden_size=16 there, 24 here" in str(refused.value)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("entry", ["predict", "export", "eval"])
def test_no_ckpt_path_is_a_one_line_error(entry, tmp_path, tiny_data_dir):
    with pytest.raises(CheckpointError, match=r"^no checkpoint given: add ckpt_path=PATH"):
        run_entry_point(entry, None, tmp_path, tiny_data_dir)


def test_train_cli_with_a_missing_checkpoint_is_one_line(tmp_path, tiny_data_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstm_sentiment.train",
            f"ckpt_path={tmp_path / 'nope.ckpt'}",
            f"paths.data_dir={tiny_data_dir}",
            f"paths.log_dir={tmp_path}/logs",
            f"paths.cache_dir={tmp_path}/cache",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert (
        result.stderr.splitlines()[-1]
        == f"error: {tmp_path / 'nope.ckpt'}: no such checkpoint file"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cache").exists()


def test_intact_checkpoint_still_loads(tiny_checkpoint):
    assert load_predictor(tiny_checkpoint).probabilities(["great excellent"])[0] > 0
