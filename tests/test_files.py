"""Where review files are found: $REVIEWS_DIR, then the `make data` folder, then the sample."""

from __future__ import annotations

import hashlib
import inspect

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lstm_sentiment.config import CONFIG_DIR
from lstm_sentiment.data import download, files
from lstm_sentiment.data.files import (
    SAMPLE_DIR,
    ReviewFileError,
    default_data_dir,
    find_review_file,
)

from helpers import write_fasttext

# data/sample/README.md, and the reference copy's checksums
SAMPLE_SHA256 = {
    "train": "69b53ff7dbe9bdc2a664a6d422dfb0d233149687002f2057de66505aab1be393",
    "test": "ab2048d61e799e54e1d467721f69f737f1b6d1829178f61a7776ce66ad66410d",
}


def test_the_embedded_sample_is_the_published_one():
    for split, sha in SAMPLE_SHA256.items():
        path = find_review_file(SAMPLE_DIR, split)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, path


def test_lookup_order_env_then_full_set_then_sample(tmp_path, monkeypatch):
    full = tmp_path / "full"
    monkeypatch.setattr(files, "FULL_SET_DIR", full)
    monkeypatch.delenv(files.ENV_VAR, raising=False)
    assert default_data_dir() == SAMPLE_DIR  # nothing downloaded: the sample
    full.mkdir()
    assert default_data_dir() == full  # `make data` ran: the full set
    monkeypatch.setenv(files.ENV_VAR, str(tmp_path / "missing"))
    assert default_data_dir() == tmp_path / "missing"  # set but absent: named, so errors say so


def test_the_config_uses_the_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv(files.ENV_VAR, str(tmp_path))
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train")
    assert cfg.paths.data_dir == cfg.data.data_dir == str(tmp_path)


def test_make_data_downloads_where_training_looks(monkeypatch, capsys):
    dest = inspect.signature(download.download_dataset).parameters["dest"].default
    assert dest / download.EXTRACTED == files.FULL_SET_DIR
    # the command itself, without --dest as its docstring shows (`make data`)
    asked = []

    def fetch(dest, url, **kwargs):
        asked.append(dest)
        return dest / download.EXTRACTED

    monkeypatch.setattr(download, "download_dataset", fetch)
    assert download.main([]) == 0
    assert asked[0] / download.EXTRACTED == files.FULL_SET_DIR
    assert capsys.readouterr().out.split()[0] == str(files.FULL_SET_DIR / "train.csv")


def test_the_data_folder_used_is_named_with_why(tmp_path, monkeypatch):
    monkeypatch.delenv(files.ENV_VAR, raising=False)
    sample = "(the 9,459/1,984-review sample shipped in data/sample; `make data` gets the full set)"
    assert files.describe_data_dir(SAMPLE_DIR).endswith(sample)
    assert files.describe_data_dir(files.FULL_SET_DIR).endswith(
        "(the full set, downloaded by `make data`)"
    )
    assert files.describe_data_dir(tmp_path) == f"{tmp_path} (data.data_dir)"
    monkeypatch.setenv(files.ENV_VAR, str(tmp_path))
    assert files.describe_data_dir(tmp_path) == f"{tmp_path} (${files.ENV_VAR})"


def test_file_names_and_a_named_file(tmp_path):
    write_fasttext(tmp_path / "train.ft.txt", 5, seed=0)
    (tmp_path / "train.csv").write_text('"1","a","b"\n')
    assert find_review_file(tmp_path, "train") == tmp_path / "train.ft.txt"  # fastText first
    assert find_review_file(tmp_path, "train", "train.csv") == tmp_path / "train.csv"
    with pytest.raises(ReviewFileError, match=r"no review file test.ft.txt.bz2 or .*`make data`"):
        find_review_file(tmp_path, "test")
