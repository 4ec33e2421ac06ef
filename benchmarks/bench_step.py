"""Milliseconds per training step, in one process, interleaved: the raw loop vs our network in
a plain loop vs our LightningModule under the Trainer, on the same reviews (fixed 200 padding).

    python benchmarks/bench_step.py --steps 20 --rounds 15
    python benchmarks/bench_step.py --steps 100 --rounds 5 --size 4   # the loops' own cost

The raw loop is ``reference_loop.train_loop`` (the recipe's shuffled DataLoader over a left-padded
int64 matrix) and the Trainer reads our DataModule's loader, each loading its batches as it goes;
the plain loop gets our batches ready-made, so it times our network alone.
``benchmarks.run --section train`` times each loop in an interpreter of its own; this script puts
them in one, so what remains between rows is the loops' own overhead, not process-to-process
variation (on this machine mostly system time spent on page faults), which was up to 10%."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reference_loop import SentimentNet, train_loop  # noqa: E402
from benchmarks.run import MODEL  # noqa: E402
from benchmarks.tasks import _datamodule, _left_padded, bench_module, timed_trainer  # noqa: E402
from lstm_sentiment.data.files import SAMPLE_DIR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="embedding and hidden size (default: the training benchmark's); a tiny network "
        "(--size 4) leaves the loops' own per-step cost, which a real step hides in its noise",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    size, steps = args.batch_size, args.steps
    cache = tempfile.TemporaryDirectory(prefix="bench-step-")  # the Trainer reads it again
    dm = _datamodule(str(args.data_dir), cache.name, size, fixed_padding=True, bucket=False)
    features, labels = (a[: size * steps] for a in _left_padded(dm.datasets["train"]))
    batches = [b for _, b in zip(range(steps), dm.train_dataloader(), strict=False)]
    model = dict(MODEL)
    if args.size:
        model.update(embedding_dim=args.size, hidden_size=args.size)

    def raw() -> float:  # the recipe's loop as the cross-process benchmark runs it
        torch.manual_seed(0)
        net = SentimentNet(
            len(dm.vocab), model["embedding_dim"], model["hidden_size"], drop_prob=model["dropout"]
        )
        run = train_loop(net, features, labels, epochs=1, batch_size=size, lr=MODEL["lr"])
        return run["seconds"] / steps

    def ours_plain_loop() -> float:
        torch.manual_seed(0)
        net = bench_module(len(dm.vocab), model, pack=False).net
        opt, loss_fn = torch.optim.Adam(net.parameters(), MODEL["lr"]), torch.nn.BCEWithLogitsLoss()
        start = time.perf_counter()
        for batch in batches:
            net.zero_grad()
            loss_fn(net(batch["ids"], batch["lengths"]), batch["labels"]).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
        return (time.perf_counter() - start) / steps

    def ours_lightning() -> float:
        torch.manual_seed(0)
        module = bench_module(len(dm.vocab), model, pack=False)
        trainer, timer = timed_trainer(1, limit_train_batches=steps)
        trainer.fit(module, datamodule=dm)
        return timer.seconds / steps

    loops = {
        "raw loop (recipe's DataLoader over a left-padded matrix)": raw,
        "ours, network in a plain loop": ours_plain_loop,
        "ours, LightningModule + Trainer": ours_lightning,
    }
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, loop in loops.items():
            times[name].append(loop())
    raw_runs = times[next(iter(loops))]
    shape = f"embedding {model['embedding_dim']}, hidden {model['hidden_size']}"
    print(f"\n{steps} steps of batch {size}, {shape}, {args.threads} thread(s), ", end="")
    print(f"{args.rounds} rounds:\n")
    print("| loop | ms/step (median) | fastest | vs raw (median of per-round ratios) | per round |")
    print("|---|---|---|---|---|")
    for name, runs in times.items():
        # a round runs every loop back to back, so its ratio cancels slower drifts in load
        ratio = statistics.median(r / t for r, t in zip(raw_runs, runs, strict=True))
        rounds = " ".join(f"{1e3 * r:.0f}" for r in runs)
        print(
            f"| {name} | {1e3 * statistics.median(runs):.1f} | {1e3 * min(runs):.1f} "
            f"| {ratio:.3f}x | {rounds} |"
        )
    cache.cleanup()


if __name__ == "__main__":
    main()
