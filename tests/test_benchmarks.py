"""`make bench` end to end on tiny inputs: every section runs and prints its full table."""

from __future__ import annotations

import bz2
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import ABLATION
from benchmarks.tasks import fasttext_line, peer_data
from lstm_sentiment.config import build

from helpers import compose_config

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


def test_fasttext_line_is_the_reference_cleaning():
    line = fasttext_line(1, "Great value: 5 STARS!! Would buy again...")
    assert line == "__label__1 great value : 0 stars ! ! would buy again . . .\n"


def test_peer_data_is_our_datamodules_split(tiny_data_dir, tmp_path):
    """fastText's files hold exactly the reviews our DataModule trains and tests on, indexed by
    review, not by file line (a skipped bad line shifts the two apart)."""
    data = tmp_path / "reviews"
    data.mkdir()
    train_lines = (tiny_data_dir / "train.ft.txt").read_text().splitlines(keepends=True)
    train_lines.insert(7, "__label__3 a review with a label that does not exist\n")
    (data / "train.ft.txt").write_text("".join(train_lines))
    test_lines = (tiny_data_dir / "test.ft.txt").read_text().splitlines(keepends=True)
    (data / "test.ft.txt").write_text("".join(test_lines))
    cfg = compose_config("train", tmp_path, data)
    dm = build(cfg.data)
    dm.setup("fit")

    out = peer_data(
        overrides=[f"data.data_dir={data}", f"paths.cache_dir={tmp_path / 'peer-cache'}",
                   "data.preprocess_workers=1", "data.progress=false"],
        out_dir=str(tmp_path / "fasttext"),
    )  # fmt: skip

    def as_fasttext(lines: list[str]) -> str:
        labels = {"__label__1": 0, "__label__2": 1}
        records = [line.rstrip("\n").split(" ", 1) for line in lines]
        return "".join(fasttext_line(labels[lab], text) for lab, text in records if lab in labels)

    reviews = [line for line in train_lines if not line.startswith("__label__3")]
    train = [reviews[i] for i in dm.datasets["train"].indices]
    assert Path(out["train_ours"]).read_text() == as_fasttext(train)
    assert Path(out["train_all"]).read_text() == as_fasttext(reviews)
    assert Path(out["test"]).read_text() == as_fasttext(test_lines)
    assert out["sizes"] == {"train_ours": 540, "val": 60, "train_all": 600, "test": 200}


@pytest.mark.slow
def test_peer_section_sets_fasttext_beside_our_default_runs(bz2_data_dir, tmp_path):
    overrides = "trainer.max_epochs=1 model.net.hidden_size=8 data.preprocess_workers=1"
    args = ["--section", "peer", "--peer-seeds", "2", "--peer-overrides", overrides]
    out = bench(bz2_data_dir, tmp_path, *args)
    rows = table_rows(out, "model")
    assert list(rows)[:2] == [
        "fastText bigrams, our 540 training reviews",  # 600 less the 10% held out
        "fastText bigrams, whole train file (600 reviews)",
    ]
    assert len(rows) == 3 and list(rows)[2].startswith("ours: `make train` default")
    for name, (mean_sd, per_seed, wall) in rows.items():
        accs = [float(x) for x in per_seed.split()]
        assert len(accs) == 2, name
        assert all(0 <= a / 100 <= 1 for a in accs), name
        assert number(mean_sd) == pytest.approx(statistics.mean(accs), abs=0.006), name
        assert number(wall) > 0, name
    assert "Seed 1 trained twice: identical predictions on all 200 test reviews" in out
    assert "max_epochs 1; model: " in out and "hidden_size=8," in out


@pytest.mark.slow
def test_ablation_section_adds_one_change_a_row(bz2_data_dir, tmp_path):
    overrides = "model.net.hidden_size=8 model.net.embedding_dim=8 data.preprocess_workers=1"
    args = ["--section", "ablation", "--ablation-seeds", "2", "--ablation-overrides", overrides]
    out = bench(bz2_data_dir, tmp_path, *args, "--ablation-jobs", "2")
    rows = table_rows(out, "change (cumulative)")
    assert len(rows) == len(ABLATION)
    undone = [cells[0] for cells in rows.values()]
    assert undone[-1] == "(none: `make train`)"  # the last row is the default itself
    for k in range(len(undone) - 1):  # each row undoes one change fewer than the row above
        assert undone[k].endswith(undone[k + 1]) or undone[k + 1].startswith("(none")
    for cells in rows.values():
        check_ablation_cells(cells, seeds=2)


def check_ablation_cells(cells: list[str], seeds: int) -> None:
    """Means over the per-seed cells, each an accuracy in percent."""
    val, test, val_seeds, test_seeds = cells[1:5]
    for mean, per_seed in ((val, val_seeds), (test, test_seeds)):
        values = [float(x) for x in per_seed.split()]
        assert len(values) == seeds and all(0 <= v <= 100 for v in values)
        assert number(mean) == pytest.approx(statistics.mean(values), abs=0.006)


@pytest.mark.slow
def test_ablation_section_runs_the_rows_asked_for(bz2_data_dir, tmp_path):
    overrides = "model.net.hidden_size=8 model.net.embedding_dim=8 data.preprocess_workers=1"
    args = ["--section", "ablation", "--ablation-seeds", "2", "--ablation-overrides", overrides]
    out = bench(bz2_data_dir, tmp_path, *args, "--ablation-rows", "3", str(len(ABLATION)))
    rows = table_rows(out, "change (cumulative)")
    assert list(rows) == [f"+ {ABLATION[2][0]}", f"+ {ABLATION[-1][0]}"]
    assert rows[f"+ {ABLATION[2][0]}"][0] == " ".join(
        f"`{o}`" for _, later in ABLATION[3:] for o in later
    )
    for cells in rows.values():
        check_ablation_cells(cells, seeds=2)


def test_ablation_section_refuses_a_row_it_does_not_have(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.run", "--section", "ablation", "--ablation-rows"]
    cmd += ["0", str(len(ABLATION) + 1), "--work-dir", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"--ablation-rows: rows are 1..{len(ABLATION)}" in done.stderr


@pytest.mark.slow
def test_full_cpu_section_times_experiment_full_cpu(bz2_data_dir, tmp_path):
    overrides = "model.net.hidden_size=8 model.net.embedding_dim=8 data.preprocess_workers=1"
    args = ["--section", "full_cpu", "--full-sizes", "800", "200", "--full-overrides", overrides]
    out = bench(bz2_data_dir, tmp_path, *args)
    ((command, cells),) = table_rows(out, "command").items()
    assert command == f"`python -m lstm_sentiment.train experiment=full_cpu {overrides}`"
    wall, reading, training, test = cells[:4]
    assert number(wall) > 0 and "?" not in (reading, training, test)
    assert "800 train / 200 test reviews drawn with replacement" in out


def test_gpu_estimate_fit_reproduces_deepbench_rows():
    """The LSTM time-step model behind the README's GPU column stays within 25% of every
    DeepBench V100 row it was fitted to, and evaluation (forward alone) costs less."""
    from benchmarks.gpu_estimate import DEEPBENCH_V100_LSTM, fit_step_ms, step_ms

    fits = {training: fit_step_ms(training)[0] for training in (True, False)}
    for hidden, batch, steps, forward, back_inputs, back_weights in DEEPBENCH_V100_LSTM:
        both = (forward + back_inputs + back_weights) / steps
        assert step_ms(fits[True], hidden, batch) == pytest.approx(both, rel=0.25)
        assert step_ms(fits[False], hidden, batch) == pytest.approx(forward / steps, rel=0.25)
        assert step_ms(fits[False], hidden, batch) < step_ms(fits[True], hidden, batch)


def test_gpu_estimate_section_prices_each_readme_run(bz2_data_dir, tmp_path):
    from benchmarks.gpu_estimate import RUNS, compose
    from lstm_sentiment.config import yaml_settings
    from lstm_sentiment.data.files import FULL_SET_SIZES

    rows = table_rows(bench(bz2_data_dir, tmp_path, "--section", "gpu_estimate"), "run")
    assert list(rows) == list(RUNS)

    def minutes(cell: str) -> float:
        value, unit = cell.strip("*").split()
        return float(value) * {"s": 1 / 60, "min": 1, "h": 60}[unit]

    full_cpu = yaml_settings("experiment/full_cpu")["data"]
    held = round(full_cpu["max_train_reviews"] * full_cpu["val_fraction"])
    sizes = f"{full_cpu['max_train_reviews'] - held:,} / {held:,} / {FULL_SET_SIZES['test']:,}"
    assert rows["experiment=full_cpu (after make data)"][0].startswith(sizes + ", ")
    for name, cells in rows.items():
        batch = compose(RUNS[name], str(tmp_path / "cache"), bz2_data_dir)[0].data.batch_size
        sizes, epochs = cells[0].rsplit(", ", 1)
        train = number(sizes.split(" / ")[0])
        assert number(cells[1]) == number(epochs) * -(-train // batch)  # training batches
        assert number(cells[1].split(" x ")[1]) > 0  # a measured width
    estimates = [minutes(cells[-1]) for cells in rows.values()]
    assert 0 < estimates[0] < estimates[1] < estimates[2]  # sample < 200,000 reviews < all
