"""Wall time of one grid sweep run three ways: one trial after another, 2 local parallel workers
(hydra/launcher=local_parallel), and SLURM with 2 slots (hydra/launcher=slurm, 1 CPU a job).

    python benchmarks/bench_sweep.py                        # 8 trials on the review sample
    python benchmarks/bench_sweep.py --modes sequential local_parallel

Each mode runs the real command line (``python -m lstm_sentiment.train -m ...``) on the same
8-trial grid (hidden size x learning rate x seed) into its own folder, after the token cache was
built once, and checks that every trial ended ``ok`` in the sweep summary. One after another, a
trial gets one torch thread (mode ``sequential_1_thread``; ``sequential`` gives it all the cores,
which on this busy 2-core machine ran 10x slower: threads wait for cores other jobs hold); side by
side, joblib and the SLURM preset give each of the 2 trials one thread. Ratios are against the
faster one-after-another row.
SLURM: a one-node cluster on 127.0.0.1 started for the run (tests/slurm.py; it installs Debian's
slurm-wlm when missing), or with --use-slurm-conf the cluster $SLURM_CONF names.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.run import ROOT, load_average, table  # noqa: E402
from lstm_sentiment.data.files import SAMPLE_DIR  # noqa: E402

GRID = ["model.net.hidden_size=64,128", "model.lr=0.001,0.003", "seed=1,2"]
MODES = {
    "sequential": [],
    "sequential_1_thread": [],
    "local_parallel": ["hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2"],
    "slurm": ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1"],
}
LABELS = {
    "sequential": "one after another (1 process, torch threads = cores)",
    "sequential_1_thread": "one after another (1 process, 1 torch thread)",
    "local_parallel": "2 local parallel workers (joblib, 1 thread each)",
    "slurm": "SLURM, 2 slots (submitit, 1 CPU a job)",
}


def sweep_command(args, work: Path, mode: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lstm_sentiment.train",
        "-m",
        "experiment=small",
        f"paths.data_dir={args.data_dir}",
        f"paths.cache_dir={work / 'cache'}",
        f"hydra.sweep.dir={work / mode}",
        "data.progress=false",
        "callbacks.rich_progress_bar=null",
        "++trainer.enable_model_summary=false",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.limit_train_batches={args.batches or 'null'}",
        *GRID,
        *MODES[mode],
    ]


def trial_seconds(sweep: Path, job: str) -> float:
    """From Hydra writing the trial's config to train() writing its result."""
    start = (sweep / job / ".hydra" / "config.yaml").stat().st_mtime
    return (sweep / job / "metrics.json").stat().st_mtime - start


def run_mode(args, work: Path, mode: str, env: dict) -> tuple[float, float]:
    cmd = sweep_command(args, work, mode)
    if mode == "sequential_1_thread":
        env = {**env, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{mode} sweep failed:\n{done.stderr[-3000:]}")
    rows = list(csv.DictReader((work / mode / "summary.csv").open()))
    if len(rows) != 8 or any(r["status"] != "ok" for r in rows):
        sys.exit(f"{mode}: not 8 ok trials: {[(r['job'], r['status']) for r in rows]}")
    return seconds, statistics.median(trial_seconds(work / mode, r["job"]) for r in rows)


def warm_cache(args, work: Path, env: dict) -> None:
    """Build the token cache once, so every mode's trials only train."""
    cmd = [sys.executable, "-m", "lstm_sentiment.train", "experiment=small"]
    cmd += [f"paths.data_dir={args.data_dir}", f"paths.cache_dir={work / 'cache'}"]
    cmd += ["data.progress=false", "train=false", "test=false", "optimized_metric=null"]
    cmd += [f"hydra.run.dir={work / 'warm'}"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SAMPLE_DIR)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=list(MODES),
        default=["sequential_1_thread", "local_parallel", "slurm"],
        help="sequential: one after another with torch threads = cores",
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batches", type=int, default=None, help="per epoch (default: all)")
    parser.add_argument(
        "--use-slurm-conf", action="store_true", help="the cluster $SLURM_CONF names, not a new one"
    )
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    cluster = None
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        work = Path(tmp)
        try:
            if "slurm" in args.modes and not args.use_slurm_conf:
                sys.path.insert(0, str(ROOT / "tests"))
                from slurm import install_reason, start_cluster

                reason = install_reason()
                if reason:
                    sys.exit(f"no SLURM: {reason}")
                cluster = start_cluster(work / "slurm", cpus=2)
                env.update(cluster.env)
            warm_cache(args, work, env)
            seconds = {mode: run_mode(args, work, mode, env) for mode in args.modes}
        finally:
            if cluster is not None:
                cluster.stop()

    base = min((s for m, (s, _) in seconds.items() if m.startswith("sequential")), default=None)
    rows = [
        [
            LABELS[mode],
            8,
            f"{s:.0f}",
            f"{trial:.1f}",
            f"{8 * 60 / s:.1f}",
            f"{base / s:.2f}x" if base else "",
        ]
        for mode, (s, trial) in seconds.items()
    ]
    header = ["how the 8 trials ran", "trials", "wall s", "median s a trial", "trials/min"]
    header.append("vs faster sequential")
    print(table(header, rows))
    print(
        f"\nGrid {' x '.join(GRID)} on {args.data_dir.name}; experiment=small, "
        f"{args.epochs} epochs of {args.batches or 'all'} batches, validation and test a trial; "
        f"{len(os.sched_getaffinity(0))} cores; {load_average()} at the end."
    )


if __name__ == "__main__":
    main()
