"""Forward+backward throughput of ScratchLSTM vs torch.nn.LSTM, printed as a Markdown table.

Usage: python benchmarks/bench_scratch_lstm.py --batch 64 --seq 100 --input 64 --hidden 128
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

try:
    from lstm_sentiment.models.components.scratch_lstm import ScratchLSTM
except ModuleNotFoundError:  # package not installed: use the src layout directly
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from lstm_sentiment.models.components.scratch_lstm import ScratchLSTM


def make_step(module: nn.Module, x: torch.Tensor):
    def step() -> None:
        module.zero_grad(set_to_none=True)
        out, (h_n, c_n) = module(x)
        (out.sum() + h_n.sum() + c_n.sum()).backward()

    return step


def samples_per_second(step, batch: int, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return iters * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=100)
    parser.add_argument("--input", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    shape = (args.input, args.hidden, args.layers)
    reference = nn.LSTM(*shape, bidirectional=args.bidirectional)
    scratch = ScratchLSTM(*shape, bidirectional=args.bidirectional)
    scratch.load_state_dict(reference.state_dict())
    x = torch.randn(args.seq, args.batch, args.input)

    steps = {"nn.LSTM": make_step(reference, x), "ScratchLSTM": make_step(scratch, x)}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    # Alternate the two in rounds and keep the median, so a noisy moment hits both alike.
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rates[name].append(samples_per_second(step, args.batch, args.iters))
    median = {name: statistics.median(r) for name, r in rates.items()}

    print(
        f"batch {args.batch}, seq {args.seq}, input {args.input}, hidden {args.hidden}, "
        f"layers {args.layers}, bidirectional {args.bidirectional}, forward+backward, "
        f"median of {args.rounds} rounds x {args.iters} iterations after {args.warmup} warm-up, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print("| implementation | samples/s | ratio vs nn.LSTM |")
    print("|---|---:|---:|")
    for name, rate in median.items():
        print(f"| {name} | {rate:,.0f} | {rate / median['nn.LSTM']:.2f} |")


if __name__ == "__main__":
    main()
