"""One GPU per concurrent trial of a local parallel sweep (gpu_slots.py). No GPU here: the slots
are lock files, so they are tested with a made-up GPU count in real, separate processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from lstm_sentiment import gpu_slots

from helpers import compose_config

# a trial: take a slot among 2 GPUs, write "<index> <trainer.devices>" to `out`, hold the slot
# until the file `release` appears
TRIAL = """
import sys, time
from pathlib import Path
from omegaconf import OmegaConf
from lstm_sentiment import gpu_slots
lock_dir, out, release = map(Path, sys.argv[1:])
gpu_slots.LOCK_DIR, gpu_slots.WAIT_SECONDS = lock_dir, 0.05
gpu_slots.under_local_parallel = lambda: True
cfg = OmegaConf.create({"trainer": {"accelerator": "gpu", "devices": 1}})
with gpu_slots.gpu_slot(cfg, gpus=2) as index:
    out.write_text(f"{index} {list(cfg.trainer.devices)}")
    while not release.exists():
        time.sleep(0.05)
"""


def start_trial(tmp_path: Path, name: str) -> subprocess.Popen:
    args = [tmp_path / "locks", tmp_path / f"{name}.out", tmp_path / f"{name}.release"]
    return subprocess.Popen([sys.executable, "-c", TRIAL, *map(str, args)])


def wait_for(path: Path, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path.name} after {seconds} s"
        time.sleep(0.05)
    time.sleep(0.1)  # written whole
    return path.read_text()


def test_concurrent_trials_get_a_gpu_each_and_a_third_waits_for_a_free_one(tmp_path):
    trials = {name: start_trial(tmp_path, name) for name in ("a", "b")}
    held = {name: wait_for(tmp_path / f"{name}.out") for name in trials}
    assert sorted(held.values()) == ["0 [0]", "1 [1]"]  # a GPU each, not both on GPU 0
    trials["c"] = start_trial(tmp_path, "c")
    time.sleep(4)  # it started and found both GPUs taken
    assert not (tmp_path / "c.out").exists() and trials["c"].poll() is None
    (tmp_path / "a.release").touch()  # trial a ends: its GPU frees up, and c takes it
    assert wait_for(tmp_path / "c.out") == held["a"]
    for name in ("b", "c"):
        (tmp_path / f"{name}.release").touch()
    assert [trial.wait(timeout=60) for trial in trials.values()] == [0, 0, 0]


def test_only_a_one_gpu_trial_of_a_local_parallel_sweep_takes_a_slot(
    tmp_path, tiny_data_dir, monkeypatch
):
    monkeypatch.setattr(gpu_slots, "LOCK_DIR", tmp_path / "locks")
    one_gpu = ["trainer.accelerator=gpu", "trainer.devices=1"]
    cfg = compose_config(
        "train", tmp_path, tiny_data_dir, ["hydra/launcher=local_parallel", *one_gpu]
    )
    assert gpu_slots.under_local_parallel()  # the joblib launcher, read from Hydra's config
    with gpu_slots.gpu_slot(cfg, gpus=2) as index:
        assert index == 0 and OmegaConf.to_container(cfg.trainer.devices) == [0]
    for overrides in (one_gpu, ["hydra/launcher=local_parallel"]):  # one run; a CPU trial
        cfg = compose_config("train", tmp_path, tiny_data_dir, overrides)
        devices = cfg.trainer.devices
        with gpu_slots.gpu_slot(cfg, gpus=2) as index:
            assert index is None and cfg.trainer.devices == devices
