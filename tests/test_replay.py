"""Replay rows 1-5 and 10 of docs/failures.md (issue 14's table) end to end through the CLIs, as a
user would type them, and check that no input, checkpoint or run record was lost.

Run it as a script (it prints what each command did) or as a slow test:

    .venv/bin/python tests/test_replay.py [--keep DIR]
    make test ARGS='-m slow -k replay'

It trains a tiny model through ``python -m lstm_sentiment.train`` first (about 20 s), then runs
each row's commands in subprocesses against that run's checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # helpers, also when run as a script

from helpers import flip_bytes_inside, write_fasttext  # noqa: E402

PYTHON = sys.executable


@dataclass
class Step:
    row: str
    what: str
    code: int
    message: str  # the last line of stderr
    ok: bool  # the exit code and the files are what the README promises


def run(workdir: Path, module: str, *args: str | bytes, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [PYTHON, "-m", f"lstm_sentiment.{module}", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        timeout=600,
        **kwargs,
    )


def last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``: what a later command must leave as it was."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def train_tiny_model(workdir: Path) -> tuple[Path, Path]:
    """A tiny one-way LSTM trained through the CLI; its run folder and best checkpoint."""
    data = workdir / "data"
    data.mkdir()
    write_fasttext(data / "train.ft.txt", 600, seed=1)
    write_fasttext(data / "test.ft.txt", 200, seed=2)
    run_dir = workdir / "logs" / "train" / "runs" / "tiny"
    result = run(
        workdir,
        "train",
        f"hydra.run.dir={run_dir}",
        f"paths.data_dir={data}",
        f"paths.cache_dir={workdir / 'cache'}",
        "model.net.embedding_dim=16",
        "model.net.hidden_size=16",
        "model.net.bidirectional=false",
        "trainer.max_epochs=2",
        "data.progress=false",
        "data.preprocess_workers=1",
        "callbacks.rich_progress_bar=null",
        "trainer.enable_progress_bar=false",
    )
    if result.returncode != 0:
        raise RuntimeError(f"training the tiny model failed:\n{result.stderr.decode()[-3000:]}")
    (best,) = (run_dir / "checkpoints").glob("epoch_*.ckpt")
    return run_dir, best


def replay(workdir: Path) -> list[Step]:
    """Every row's commands, in ``workdir`` (paths relative to it); one Step per command."""
    run_dir, best = train_tiny_model(workdir)
    ckpt = best.relative_to(workdir)
    record = digests(run_dir)  # .hydra/, metrics.json, train.log, checkpoints/
    # row 5's copy with flipped bytes inside a tensor, made before any row could touch the original
    flipped = flip_bytes_inside(best, workdir / "flipped.ckpt")
    damaged = flipped.read_bytes()
    steps: list[Step] = []

    def step(row: str, what: str, result: subprocess.CompletedProcess, ok: bool) -> None:
        steps.append(Step(row, what, result.returncode, last_line(result.stderr), ok))

    # row 1: predict input=F output=F; the same file through a symlink
    reviews = workdir / "reviews.txt"
    reviews.write_text("".join(f"review {i}: great excellent, works well\n" for i in range(10_000)))
    kept = reviews.read_bytes()
    (workdir / "same.txt").symlink_to(reviews)
    for output in ("reviews.txt", "same.txt"):
        result = run(
            workdir, "predict", f"ckpt_path={ckpt}", "input=reviews.txt", f"output={output}"
        )
        ok = result.returncode == 1 and reviews.read_bytes() == kept
        step("1", f"predict input=reviews.txt output={output}", result, ok)

    # row 5: a copy with flipped bytes inside a tensor (CRC wrong, not truncated), everywhere
    for module, extra in [
        ("predict", ["text=great excellent"]),
        ("eval", ["paths.data_dir=data", "paths.cache_dir=cache"]),
        ("export", ["output=flipped.onnx"]),
        ("train", ["paths.data_dir=data", "paths.cache_dir=cache", "hydra.run.dir=resumed"]),
    ]:
        result = run(workdir, module, "ckpt_path=flipped.ckpt", *extra)
        ok = result.returncode == 1 and b"CRC-32" in result.stderr
        step("5", f"{module} ckpt_path=<flipped bytes>", result, ok)
    assert flipped.read_bytes() == damaged

    # row 10: predict's own failure modes
    result = run(workdir, "predict", f"ckpt_path={ckpt}", "batch_size=0", "text=great")
    step("10", "predict batch_size=0", result, result.returncode == 1 and not result.stdout)

    blanks = workdir / "blanks.txt"
    blanks.write_text("great excellent\n\nterrible awful\n\n\nlove it\n")
    result = run(workdir, "predict", f"ckpt_path={ckpt}", "input=blanks.txt")
    lines = result.stdout.decode().splitlines()
    aligned = [json.loads(line)["text"] for line in lines] == blanks.read_text().splitlines()
    step("10", "predict input=<blank lines>: output lines = input lines", result, aligned)

    result = run(workdir, "predict", f"ckpt_path={ckpt}", b"text=caf\xe9")
    step("10", "predict text=<not UTF-8>", result, result.returncode == 1 and not result.stdout)

    result = run(
        workdir, "predict", f"ckpt_path={ckpt}", "text=great", preexec_fn=lambda: os.close(0)
    )
    one = result.returncode == 0 and len(result.stdout.splitlines()) == 1
    step("10", "predict text=... with stdin closed", result, one)

    bad = workdir / "bad.txt"
    bad.write_bytes(b"great excellent\n" * 500 + b"r\xe9sum\xe9 in latin-1\n")
    earlier = workdir / "out" / "predictions.jsonl"
    earlier.parent.mkdir()
    earlier.write_text('{"an earlier run": true}\n')
    result = run(
        workdir, "predict", f"ckpt_path={ckpt}", "input=bad.txt", "output=out/predictions.jsonl"
    )
    untouched = earlier.read_text() == '{"an earlier run": true}\n'
    alone = [p.name for p in earlier.parent.iterdir()] == ["predictions.jsonl"]
    step(
        "10",
        "predict input=bad.txt (line 501 not UTF-8) output=<an earlier file>",
        result,
        untouched and alone,
    )

    # row 2, last (today's code overwrites the checkpoint the other rows use): export
    # output=<the checkpoint>, both formats
    trained = best.read_bytes()
    for fmt in ("onnx", "torchscript"):
        result = run(workdir, "export", f"ckpt_path={ckpt}", f"format={fmt}", f"output={ckpt}")
        ok = result.returncode == 1 and best.read_bytes() == trained
        step("2", f"export format={fmt} output=<the .ckpt>", result, ok)

    # nothing of the training run was changed by any of it
    steps.append(Step("all", "the run folder (.hydra/, metrics.json, checkpoints/)", 0, "",
                      digests(run_dir) == record))  # fmt: skip

    # rows 3 and 4, last (a resume adds its own record to the run folder): the README's resume
    # command on the finished run, which was trained with overrides (sizes 16, one direction)
    record_files = [".hydra/config.yaml", ".hydra/overrides.yaml", "metrics.json"]
    kept_record = {name: (run_dir / name).read_bytes() for name in record_files}

    def record_kept() -> bool:
        return all((run_dir / name).read_bytes() == kept_record[name] for name in record_files)

    resume = [f"hydra.run.dir={run_dir.relative_to(workdir)}", "ckpt_path=last"]
    result = run(workdir, "train", *resume)
    said = b"nothing left to train" in result.stdout + result.stderr
    step("3", "train hydra.run.dir=<finished run> ckpt_path=last", result,
         result.returncode == 0 and said and record_kept())  # fmt: skip

    result = run(workdir, "train", *resume, "trainer.max_epochs=3")
    resumed = json.loads((run_dir / "resumes" / "2" / "metrics.json").read_text())
    step("4", "train hydra.run.dir=<run trained with overrides> ckpt_path=last "
         "trainer.max_epochs=3", result,
         result.returncode == 0 and record_kept() and "test/acc" in resumed["metrics"])  # fmt: skip

    result = run(workdir, "train", *resume, "trainer.max_epochs=4", "model.net.hidden_size=32")
    refused = result.returncode == 1 and b"model.net.hidden_size=32 differs" in result.stderr
    step("4", "... ckpt_path=last model.net.hidden_size=32", result, refused and record_kept())
    return steps


def table(steps: list[Step]) -> str:
    rows = ["| row | command | exit | stderr, last line | as promised |", "|---|---|---|---|---|"]
    for s in steps:
        message = s.message if len(s.message) <= 110 else s.message[:107] + "..."
        rows.append(f"| {s.row} | {s.what} | {s.code} | {message} | {'yes' if s.ok else 'NO'} |")
    return "\n".join(rows)


@pytest.mark.slow
def test_replay_loses_nothing(tmp_path):
    steps = replay(tmp_path)
    assert all(s.ok for s in steps), table(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="replay in this (new) folder and keep it")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True)
        steps = replay(args.keep.resolve())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            steps = replay(Path(tmp))
    print(table(steps))
    sys.exit(0 if all(s.ok for s in steps) else 1)


if __name__ == "__main__":
    main()
