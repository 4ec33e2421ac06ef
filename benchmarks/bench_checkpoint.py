"""What checking a checkpoint on load costs (``inference.check_archive``: every zip member read
once and its CRC-32 compared), beside the load it guards, printed as a Markdown table.

Usage: python -m benchmarks.bench_checkpoint [--ckpt PATH] [--rounds 20]
Without --ckpt it first trains the default model for one epoch on the embedded sample (a minute
or two): the file then holds what every checkpoint of the default model holds (weights, Adam
state, vocabulary). The file is read from the page cache after the first round (warm), which is
the case where the check's own cost shows most; a cold read costs the same disk read either way.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_predict import train_quickly
from lstm_sentiment.inference import check_archive, load_predictor, read_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, help="a checkpoint; default: train one for 1 epoch")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt or train_quickly(Path(tmp))
        steps = {
            "torch.load(weights_only=True) alone": lambda: torch.load(
                ckpt, map_location="cpu", weights_only=True
            ),
            "check_archive (the CRC check) alone": lambda: check_archive(ckpt),
            "read_checkpoint (check + load + keys)": lambda: read_checkpoint(ckpt),
            "load_predictor (all predict does to load)": lambda: load_predictor(ckpt),
        }
        for step in steps.values():
            step()  # warm-up: the file in the page cache, imports done
        # interleaved rounds, so a busy spell of the machine hits every row alike
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                started = time.perf_counter()
                step()
                times[name].append(1000 * (time.perf_counter() - started))
        size = ckpt.stat().st_size
        net = read_checkpoint(ckpt)["hyper_parameters"]["net"]

    load = statistics.median(times["torch.load(weights_only=True) alone"])
    print(
        f"{ckpt.name}: {size / 2**20:.1f} MiB, {net['rnn_type']} {net['num_layers']}x"
        f"{net['hidden_size']}{' bidirectional' if net['bidirectional'] else ''}, embedding "
        f"{net['embedding_dim']}; median of {args.rounds} warm reads, 1 thread\n"
    )
    print("| step | ms | / torch.load |")
    print("|---|---:|---:|")
    for name in steps:
        ms = statistics.median(times[name])
        print(f"| {name} | {ms:.1f} | {ms / load:.2f}x |")


if __name__ == "__main__":
    main()
