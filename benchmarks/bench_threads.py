"""One training step of the default network by torch thread count and OpenMP wait policy, on an
idle machine and beside a process that keeps one core busy.

    .venv/bin/python benchmarks/bench_threads.py [--seconds 15] [--rounds 2]

Each cell runs in a fresh interpreter (the wait policy is read when torch loads OpenMP), rounds
interleaved; the table gives the median ms per step. Why it exists: ``lstm_sentiment/__init__.py``
sets ``OMP_WAIT_POLICY=PASSIVE`` by default, and this shows what that buys and costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STEP = """
import sys, time, torch
from lstm_sentiment.config import yaml_settings
from lstm_sentiment.models.components.rnn_classifier import RNNClassifier

torch.manual_seed(0)
net = RNNClassifier(vocab_size=17_412, **yaml_settings("model/lstm")["net"])
opt = torch.optim.Adam(net.parameters(), 2e-3)
ids, lengths = torch.randint(2, 17_412, (64, 90)), torch.randint(45, 91, (64,))
labels = torch.randint(0, 2, (64,)).float()
loss_fn = torch.nn.BCEWithLogitsLoss()
start, steps = time.perf_counter(), 0
while time.perf_counter() - start < float(sys.argv[1]) or steps < 3:
    opt.zero_grad()
    loss_fn(net(ids, lengths), labels).backward()
    opt.step()
    steps += 1
print((time.perf_counter() - start) / steps * 1000)
"""


def step_ms(threads: int, policy: str, seconds: float) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": policy}
    out = subprocess.run([sys.executable, "-c", STEP, str(seconds)], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="timed per cell")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cells = [(1, "ACTIVE"), (2, "ACTIVE"), (2, "PASSIVE"), (1, "PASSIVE")]
    results: dict[tuple, list[float]] = {}
    for load in ("idle", "one core busy"):
        busy = None
        if load != "idle":  # a plain Python loop: one core, all the time
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1)
        try:
            for _ in range(args.rounds):
                for threads, policy in cells:
                    ms = step_ms(threads, policy, args.seconds)
                    results.setdefault((load, threads, policy), []).append(ms)
                    print(f"  {load}: {threads} thread(s), {policy}: {ms:.0f} ms", flush=True)
        finally:
            if busy is not None:
                busy.kill()
    print(f"\n{os.cpu_count()} cores; median of {args.rounds} round(s), ms per training step of "
          "the default network (batch 64, 90 tokens):\n")  # fmt: skip
    print("| threads | OMP_WAIT_POLICY | idle | one core busy |")
    print("|---|---|---|---|")
    for threads, policy in cells:
        row = [f"{statistics.median(results[load, threads, policy]):.0f}"
               for load in ("idle", "one core busy")]  # fmt: skip
        print(f"| {threads} | {policy} | {row[0]} | {row[1]} |")


if __name__ == "__main__":
    main()
