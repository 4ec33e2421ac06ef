"""`make bench` end to end on tiny inputs: every section runs and prints its full table."""

from __future__ import annotations

import bz2
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bz2_data_dir(tiny_data_dir, tmp_path_factory) -> Path:
    """The tiny reviews under the names the benchmark reads (the real sample's)."""
    folder = tmp_path_factory.mktemp("bench-data")
    for split in ("train", "test"):
        raw = (tiny_data_dir / f"{split}.ft.txt").read_bytes()
        (folder / f"{split}.ft.txt.bz2").write_bytes(bz2.compress(raw))
    return folder


def bench(data_dir: Path, tmp_path: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "benchmarks.run", "--data-dir", str(data_dir)]
    cmd += ["--work-dir", str(tmp_path), *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def table_rows(text: str, first_header: str) -> dict[str, list[str]]:
    """The rows of the markdown table whose first header cell is ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def number(cell: str) -> float:
    return float(re.match(r"[-+]?[\d,]*\.?\d+", cell).group().replace(",", ""))


@pytest.mark.slow
def test_preprocess_section_compares_identical_tokens(bz2_data_dir, tmp_path):
    out = bench(bz2_data_dir, tmp_path, "--section", "preprocess")
    rows = table_rows(out, "pipeline")
    assert len(rows) == 5 and all(number(r[2]) > 0 for r in rows.values())  # reviews/s
    assert "give the same token list for all 800 reviews" in out


@pytest.mark.slow
def test_train_section_rows_with_extra_pools(bz2_data_dir, tmp_path):
    out = bench(bz2_data_dir, tmp_path, "--section", "train", "--epochs", "1", "--train-pools", "4")
    rows = table_rows(out, "training loop")
    assert len(rows) == 5
    assert "ours (Lightning), bucketed (pools of 4 batches), pack=false" in rows
    for name, cells in rows.items():
        assert number(cells[0]) > 0, name  # samples/s
        assert 0 <= number(cells[-1]) <= 100, name  # test accuracy %
    assert rows["ours (Lightning), fixed 200, pack=false"][3] == "1.00x"  # vs ours fixed 200


@pytest.mark.slow
def test_accuracy_section_pairs_runs_by_seed(bz2_data_dir, tmp_path):
    args = ["--section", "accuracy", "--acc-seeds", "2", "--acc-epochs", "1"]
    out = bench(
        bz2_data_dir, tmp_path, *args, "--acc-pools", "1", "--no-acc-raw", "--acc-bidirectional"
    )
    assert "bidirectional network" in out
    rows = table_rows(out, "training loop")
    fixed = rows["ours (Lightning), fixed 200, pack=false"]
    pool_1 = rows["ours (Lightning), bucketed (pools of 1 batch), pack=false"]
    fixed_runs, pool_runs = ([float(x) for x in row[2].split()] for row in (fixed, pool_1))
    assert len(fixed_runs) == len(pool_runs) == 2
    # the paired column is the mean of the per-seed differences
    paired = sum(p - f for p, f in zip(pool_runs, fixed_runs, strict=True)) / 2
    assert number(pool_1[1]) == pytest.approx(paired, abs=0.06)
    # pools of one batch are fixed 200's shuffled batches, padded only to their longest review:
    # padding leaves every gradient unchanged, so the runs differ by float rounding alone
    assert abs(number(pool_1[1])) <= 2.0
