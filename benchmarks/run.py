"""`make bench`: preprocessing, training speed, scale, and our default beside fastText, as tables.

    python -m benchmarks.run              # preprocess, train, scale, peer, gpu_estimate: ~25 min
    python -m benchmarks.run --section preprocess             # or train, scale, peer
    python -m benchmarks.run --section scale --scale-sizes 100000 400000 3600000   # the full set
    python -m benchmarks.run --rounds 3                       # median of 3 interleaved rounds
    python -m benchmarks.run --section accuracy --acc-seeds 8 --acc-jobs 2   # fixed vs bucketed
    python -m benchmarks.run --section ablation --ablation-jobs 2   # the default, step by step
    python -m benchmarks.run --section full_cpu    # experiment=full_cpu on 3.6M/400k reviews
    python -m benchmarks.run --section gpu_estimate   # the README's runs on one GPU, estimated

The peer section sets our default training run (``python -m lstm_sentiment.train seed=S``, the
default config whatever it is, one run at a time: ``--peer-jobs N`` runs N at once, but then a wall
time is not a lone run's) beside fastText with word bigrams (PyPI ``fasttext-numpy2-wheel``, in the
``bench`` and ``dev`` extras), on one split: fastText trains on exactly the training reviews our
DataModule keeps (the train file less its validation reviews), and again on the whole train file,
with the reference settings (wordNgrams 2, dim 50, lr 0.5, 10 epochs; text lowercased, digits to
0) on one thread (deterministic). All are tested on the same test reviews, seeds
1..``--peer-seeds``; the table gives test accuracy (mean ± sd, per seed) and wall time per run.
``--peer-overrides "trainer.max_epochs=1 model.net.hidden_size=8"`` shrinks our runs (for tests).

The ablation section trains the default with each of its changes from the previous default
undone, one more per row (``ABLATION``), ``--ablation-seeds`` seeds each, and prints validation
and test accuracy per row.

Every pipeline runs in a fresh interpreter (``measure.py``) so its peak memory is its own. The
machine may be shared: compare rows of one run, and re-run when ``uptime`` shows a high load.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks import gpu_estimate
from benchmarks.measure import MB, ROOT, measured
from lstm_sentiment.data.files import FULL_SET_SIZES, SAMPLE_DIR, find_review_file

MODEL = {"embedding_dim": 64, "hidden_size": 128, "num_layers": 1, "dropout": 0.3, "lr": 3e-3}


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def median_of(runs: list[dict], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in runs)


def load_average() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------------
# 1. preprocessing


def preprocess_section(args, work: Path) -> str:
    train, test = (str(find_review_file(args.data_dir, split)) for split in ("train", "test"))
    files = {"train_path": train, "test_path": test}
    pipelines = {  # name -> (task, kwargs)
        "reference recipe (word_tokenize, Counter, padded int64)": ("reference_preprocess", {}),
        "ours cold, treebank (= word_tokenize tokens)": ("ours_cold", {"tokenizer": "treebank"}),
        "ours warm, treebank (cache)": ("ours_warm", {"tokenizer": "treebank"}),
        "ours cold, wordpunct (default tokenizer)": ("ours_cold", {"tokenizer": "wordpunct"}),
        "ours warm, wordpunct (cache)": ("ours_warm", {"tokenizer": "wordpunct"}),
    }
    runs: dict[str, list[dict]] = {name: [] for name in pipelines}
    for r in range(args.rounds):
        cache_dir = work / f"preprocess-cache-{r}"  # a cold build each round
        for name, (task, kwargs) in pipelines.items():
            if task != "reference_preprocess":
                kwargs = {**kwargs, "cache_dir": str(cache_dir), "workers": args.workers}
                if task == "ours_warm":
                    kwargs.pop("workers")
            runs[name].append(measured(task, **files, **kwargs))
        shutil.rmtree(cache_dir)

    reference = runs[next(iter(pipelines))][0]
    ours = measured("ours_on_reference_text", **files)["crcs"]
    differ = sum(a != b for a, b in zip(reference["crcs"], ours, strict=True))
    if differ:
        raise AssertionError(f"token lists differ from the reference's on {differ} reviews")

    ref_seconds = median_of(runs[next(iter(pipelines))])
    rows = []
    for name, name_runs in runs.items():
        seconds, first = median_of(name_runs), name_runs[0]
        rows.append(
            [
                name,
                f"{first['reviews']:,}",
                f"{seconds:.2f}",
                f"{first['reviews'] / seconds:,.0f}",
                f"{ref_seconds / seconds:.1f}x",
                f"{median_of(name_runs, 'cpu_seconds'):.2f}",
                f"{max(r['peak_main_mb'] for r in name_runs):.0f}",
                f"{max(r['peak_tree_mb'] for r in name_runs):.0f}",
            ]
        )
    header = ["pipeline", "reviews", "seconds", "reviews/s", "vs reference", "CPU s (all procs)",
              "peak RSS main (MB)", "peak RSS all processes (MB)"]  # fmt: skip
    workers = runs["ours cold, treebank (= word_tokenize tokens)"][0]["workers"]
    notes = [
        f"Reviews: {args.data_dir} train + test. Ours cold: {workers} tokenizing processes; "
        f"median of {args.rounds} round(s); {load_average()} at the end.",
        f"Identical tokens: the reference's tokenizer ({reference['tokenizer']}) and our treebank "
        f"tokenizer give the same token list for all {len(ours):,} reviews of the reference's "
        "cleaned text (checksums of each review's tokens).",
        f"The reference's padded int64 matrix alone: {reference['matrix_mb']:.1f} MB here "
        "(n x 200 x 8 bytes: 5.8 GB for the 3.6M training reviews).",
    ]
    return table(header, rows) + "\n\n" + "\n".join(notes)


# ---------------------------------------------------------------------------------------------
# 2. training


TRAIN_CONFIGS = {  # name -> (task, kwargs)
    "raw PyTorch loop, fixed 200 (left-padded int64 matrix)": ("train_raw", {}),
    "ours (Lightning), fixed 200, pack=false": (
        "train_ours", {"fixed_padding": True, "bucket": False, "pack": False}),
    "ours (Lightning), bucketed, pack=true": (
        "train_ours", {"fixed_padding": False, "bucket": True, "pack": True}),
    "ours (Lightning), bucketed, pack=false": (
        "train_ours", {"fixed_padding": False, "bucket": True, "pack": False}),
}  # fmt: skip


def pool_rows(pools: list[int]) -> dict:
    """Bucketed (pack=false) rows with other pool sizes: a pool of 1 batch is plain shuffled
    batches padded to their longest review; larger pools trade batch randomness for speed."""
    task, kwargs = TRAIN_CONFIGS["ours (Lightning), bucketed, pack=false"]
    rows = {}
    for pool in pools:
        pools_of = f"pools of {pool} batch" + ("es" if pool > 1 else "")
        rows[f"ours (Lightning), bucketed ({pools_of}), pack=false"] = (
            task,
            {**kwargs, "pool_batches": pool},
        )
    return rows


def training_inputs(args, work: Path) -> dict:
    """The settings every training row shares, with the token cache they read built once."""
    cache_dir = work / "train-cache"
    train, test = (str(find_review_file(args.data_dir, split)) for split in ("train", "test"))
    measured("ours_cold", train_path=train, test_path=test, tokenizer="wordpunct",
             cache_dir=str(cache_dir))  # fmt: skip
    return {
        "data_dir": str(args.data_dir),
        "cache_dir": str(cache_dir),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "model": MODEL,
        "threads": args.threads,
    }


def train_section(args, work: Path) -> str:
    common = training_inputs(args, work)
    configs = {**TRAIN_CONFIGS, **pool_rows(args.train_pools)}
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for seed in range(args.rounds):  # interleaved, so a load change hits every config alike
        for name, (task, kwargs) in configs.items():
            runs[name].append(measured(task, **common, **kwargs, seed=seed))

    def rate(name: str, key: str = "samples", time: str = "seconds") -> float:
        return statistics.median(r[key] / r[time] for r in runs[name])

    def acc(name: str) -> str:
        accs = [100 * r["test_acc"] for r in runs[name]]
        return f"{statistics.mean(accs):.1f}" + (
            f" ± {statistics.stdev(accs):.1f}" if len(accs) > 1 else ""
        )

    names = list(configs)
    raw, fixed = rate(names[0]), rate(names[1])
    raw_cpu, fixed_cpu = (rate(n, time="cpu_seconds") for n in names[:2])
    rows = [
        [
            name,
            f"{rate(name):,.0f}",
            f"{rate(name, 'tokens'):,.0f}",
            f"{rate(name) / raw:.2f}x",
            f"{rate(name) / fixed:.2f}x",
            f"{rate(name, time='cpu_seconds') / raw_cpu:.2f}x",
            f"{rate(name, time='cpu_seconds') / fixed_cpu:.2f}x",
            acc(name),
        ]
        for name in names
    ]
    header = ["training loop", "samples/s", "tokens/s", "vs raw", "vs ours fixed 200",
              "vs raw, per CPU s", "vs fixed 200, per CPU s",
              f"test acc % after {args.epochs} epochs"]  # fmt: skip
    first, m = runs[names[0]][0], MODEL
    notes = [
        f"Same {first['samples'] // args.epochs:,} training reviews, vocabulary (wordpunct, "
        f"min_freq 2, max_len 200) and, per seed, initial weights for every row; embedding "
        f"{m['embedding_dim']}, hidden {m['hidden_size']}, {m['num_layers']} layer, dropout "
        f"{m['dropout']}, batch {args.batch_size}, Adam {m['lr']}, clip 5, BCEWithLogitsLoss; "
        f"{first['threads']} torch thread(s). Only the training epochs are timed; tokens/s counts "
        "real (unpadded) tokens; the 'per CPU s' ratios divide by the process's CPU time instead "
        "of wall time (steadier when other jobs share the cores). Median samples/s of "
        f"{args.rounds} interleaved round(s) (seeds "
        f"0..{args.rounds - 1}); test accuracy: mean ± sd over those seeds on the "
        f"{args.data_dir.name} test file; {load_average()} at the end.",
    ]
    widths = [25, 50, 100, 200]
    micro = measured("pack_vs_mask", widths=widths, model=MODEL, threads=args.threads,
                     batch_size=args.batch_size, reps=8)  # fmt: skip
    micro_rows = [
        [w, f"{1e3 * micro[str(w)]['pack']:.0f}", f"{1e3 * micro[str(w)]['mask']:.0f}",
         f"{micro[str(w)]['pack'] / micro[str(w)]['mask']:.1f}x"]
        for w in widths
    ]  # fmt: skip
    micro_table = table(
        ["bucket width (tokens)", "pack=true ms/batch", "pack=false ms/batch", "mask speed-up"],
        micro_rows,
    )
    notes.append(
        f"Packed vs padded-and-gathered, forward + backward of one batch of {args.batch_size} "
        "(lengths in [0.9 w, w]), same weights, interleaved, median of 8:\n\n" + micro_table
    )
    if args.acc_seeds:
        notes.append(accuracy_table(args, common))
    return table(header, rows) + "\n\n" + "\n\n".join(notes)


def accuracy_section(args, work: Path) -> str:
    if args.acc_seeds < 2:
        raise SystemExit("--section accuracy needs --acc-seeds 2 or more (a spread needs two)")
    return accuracy_table(args, training_inputs(args, work))


def accuracy_table(args, common: dict) -> str:
    """Test accuracy of the raw loop, ours fixed 200 and ours bucketed (pack=false) over more
    seeds and epochs than the speed rows: two epochs on 8.5k reviews leave a seed-to-seed spread
    of several points. Speed is not measured here, so ``--acc-jobs`` runs may share the cores."""
    raw, fixed_200 = list(TRAIN_CONFIGS)[:2]
    names = [raw, fixed_200] if args.acc_raw else [fixed_200]
    if args.acc_bidirectional:
        if args.acc_raw:
            raise SystemExit("--acc-bidirectional needs --no-acc-raw (the recipe's net is 1-way)")
        common = {**common, "model": {**common["model"], "bidirectional": True}}
    configs = {**{n: TRAIN_CONFIGS[n] for n in names}, **pool_rows(args.acc_pools)}
    runs = [(name, seed) for seed in range(args.acc_seeds) for name in configs]

    def run(name_seed: tuple[str, int]) -> float:
        name, seed = name_seed
        task, kwargs = configs[name]
        result = measured(task, **{**common, "epochs": args.acc_epochs}, **kwargs, seed=seed)
        print(f"  seed {seed}: {100 * result['test_acc']:.2f}%  {name}", flush=True)
        return 100 * result["test_acc"]

    with ThreadPoolExecutor(args.acc_jobs) as pool:  # each run is a process of its own
        results = list(pool.map(run, runs))
    accs: dict[str, list[float]] = {name: [] for name in configs}
    for (name, _), acc in zip(runs, results, strict=True):
        accs[name].append(acc)
    fixed = accs[fixed_200]

    def paired(a: list[float]) -> str:  # same seed = same initial weights
        diffs = [x - f for x, f in zip(a, fixed, strict=True)]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5
        return f"{statistics.mean(diffs):+.2f} ± {se:.2f}"

    rows = [
        [
            name,
            f"{statistics.mean(a):.2f} ± {statistics.stdev(a):.2f}",
            paired(a) if a is not fixed else "",
            " ".join(f"{x:.1f}" for x in a),
        ]
        for name, a in accs.items()
    ]
    header = ["training loop", "test acc % (mean ± sd)", "minus fixed 200 (mean ± se)", "per seed"]
    return (
        f"Test accuracy after {args.acc_epochs} epochs, seeds 0..{args.acc_seeds - 1}, "
        f"{'bidirectional' if args.acc_bidirectional else 'one-directional'} network (a seed "
        f"gives every row the same initial weights; {args.acc_jobs} run(s) at once):\n\n"
        + table(header, rows)
    )


# ---------------------------------------------------------------------------------------------
# 3. scale


def made_up_word(i: int) -> bytes:
    """A letters-only word per index (digits would be zeroed by the cleaning): zq, zqb, ..."""
    letters = b""
    while True:
        i, r = divmod(i, 26)
        letters += bytes([97 + r])
        if not i:
            return b"zq" + letters


def resample(source: Path, dest: Path, n: int, seed: int, unique_from: int | None = None) -> float:
    """``n`` lines drawn with replacement from ``source`` into plain-text ``dest``; its MB.
    ``unique_from``: each line also gets a made-up word of its own (numbered from there)."""
    from lstm_sentiment.data.reviews import open_binary

    with open_binary(source) as f:
        lines = [line if line.endswith(b"\n") else line + b"\n" for line in f if line.strip()]
    rng = np.random.default_rng(seed)
    with open(dest, "wb") as out:
        for start in range(0, n, 100_000):
            picks = rng.integers(0, len(lines), min(100_000, n - start))
            if unique_from is not None:
                first = unique_from + start
                out.write(b"".join(
                    label + b" " + made_up_word(first + k) + b" " + text
                    for k, (label, text) in enumerate(lines[i].split(b" ", 1) for i in picks)
                ))  # fmt: skip
            else:
                out.write(b"".join(lines[i] for i in picks))
    return dest.stat().st_size / MB


def scale_section(args, work: Path) -> str:
    rows = []
    for n in args.scale_sizes:
        folder = work / f"scale-{n}"
        folder.mkdir()
        n_test = max(n // 9, 1)  # the full set's 3.6M : 400k
        unique = args.scale_unique_words
        input_mb = resample(
            find_review_file(args.data_dir, "train"),
            folder / "train.ft.txt",
            n,
            1,
            0 if unique else None,
        )
        input_mb += resample(
            find_review_file(args.data_dir, "test"),
            folder / "test.ft.txt",
            n_test,
            2,
            n if unique else None,
        )
        files = {
            "train_path": str(folder / "train.ft.txt"),
            "test_path": str(folder / "test.ft.txt"),
        }
        kwargs = {**files, "tokenizer": args.scale_tokenizer, "cache_dir": str(folder / "cache")}
        cold = measured("ours_cold", **kwargs, workers=args.workers)
        warm = measured("ours_warm", **kwargs)
        rows.append(
            [
                f"{n:,} + {n_test:,}",
                f"{input_mb:,.0f}",
                f"{cold['seconds']:.1f}",
                f"{cold['reviews'] / cold['seconds']:,.0f}",
                f"{cold['peak_main_mb']:,.0f}",
                f"{cold['peak_worker_mb']:,.0f}",
                f"{cold['peak_tree_mb']:,.0f}",
                f"{cold['cache_mb']:,.0f}",
                f"{warm['seconds']:.2f}",
                f"{warm['hash_seconds']:.2f}",
                f"{warm['peak_main_mb']:,.0f}",
                f"{(n + n_test) * 200 * 8 / MB:,.0f}",
            ]
        )
        shutil.rmtree(folder)
    header = ["train + test reviews", "input MB (plain)", "cold s", "reviews/s",
              "peak RSS main MB", "peak RSS largest worker MB", "peak RSS all processes MB",
              "cache MB", "warm load s", "of it hashing the inputs s", "warm peak RSS MB",
              "reference's padded int64 matrix MB"]  # fmt: skip
    notes = [
        f"Inputs: lines drawn with replacement from {args.data_dir.name} (train from train, test "
        f"from test; seed 1/2), written as plain text. Tokenizer {args.scale_tokenizer}, "
        f"{cold['workers']} processes; {load_average()} at the end. The warm load hashes both "
        "input files whole (sha256, streamed: the cache key), once per process. "
        + (
            "Every review holds a made-up word of its own: as many distinct tokens as reviews, "
            "more than the real full set has (a stress test of the vocabulary's memory)."
            if args.scale_unique_words
            else "Resampled lines repeat the sample's ~40k distinct tokens; the real full set has "
            "more (--scale-unique-words gives every review a token of its own)."
        ),
    ]
    return table(header, rows) + "\n\n" + "\n".join(notes)


# ---------------------------------------------------------------------------------------------
# 4. the peer: fastText beside our default training run

# The sample README's reference settings (its 87.0%). One thread: fastText's Hogwild threads
# make two runs of one seed differ; on one thread they agree (the section checks).
FASTTEXT = {"wordNgrams": 2, "dim": 50, "lr": 0.5, "epoch": 10, "thread": 1}


def train_default(overrides: list[str], seed: int, out_dir: Path) -> dict:
    """``make train`` (``python -m lstm_sentiment.train``) with ``seed`` and an output folder:
    its wall time and the test accuracy its metrics.json records."""
    from lstm_sentiment.records.trials import read_job_result

    cmd = [sys.executable, "-m", "lstm_sentiment.train", f"seed={seed}"]
    cmd += [f"hydra.run.dir={out_dir}", *overrides]
    out_dir.mkdir(parents=True)
    log = out_dir / "stdout.log"
    start = time.perf_counter()
    with open(log, "wb") as f:
        done = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    result = read_job_result(out_dir)
    if done.returncode or result["status"] != "ok":
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"`{shlex.join(cmd)}` failed (exit {done.returncode}):\n{tail}")
    metrics = result["metrics"]
    return {"seconds": seconds, "test_acc": metrics["test/acc"], "val_acc": metrics["val/acc_best"]}


def wall(seconds: list[float]) -> str:
    mean, low, high = statistics.mean(seconds), min(seconds), max(seconds)
    if mean < 100:
        return f"{mean:.1f} s ({low:.1f}-{high:.1f})"
    return f"{mean / 60:.1f} min ({low / 60:.1f}-{high / 60:.1f})"


def peer_section(args, work: Path) -> str:
    if args.peer_seeds < 2:
        raise SystemExit("--section peer needs --peer-seeds 2 or more (a spread needs two)")
    if importlib.util.find_spec("fasttext") is None:
        raise SystemExit(
            "--section peer needs fastText: pip install -e '.[bench]' (or make install)"
        )
    load_before = load_average()
    # what every run of ours gets besides its seed and output folder: the data and a token cache
    # of this benchmark's own (built once by peer_data, then found by each run)
    overrides = [f"data.data_dir={args.data_dir.resolve()}", f"paths.cache_dir={work / 'cache'}"]
    overrides += shlex.split(args.peer_overrides)
    data = measured("peer_data", overrides=overrides, out_dir=str(work / "peer-data"))
    # seeds from 1: fastText seeds a std::minstd_rand, which takes seed 0 as 1 (same model)
    sizes, seeds = data["sizes"], list(range(1, args.peer_seeds + 1))

    runs: dict[str, list[dict]] = {}
    for name, train_file in (
        (f"fastText bigrams, our {sizes['train_ours']:,} training reviews", data["train_ours"]),
        (f"fastText bigrams, whole train file ({sizes['train_all']:,} reviews)", data["train_all"]),
    ):
        runs[name] = []
        for seed in seeds:
            run = measured("fasttext_run", train_path=train_file, test_path=data["test"],
                           seed=seed, params=FASTTEXT)  # fmt: skip
            print(f"  seed {seed}: {100 * run['test_acc']:.2f}%  {name}", flush=True)
            runs[name].append(run)
    first = next(iter(runs.values()))[0]
    again = measured("fasttext_run", train_path=data["train_ours"], test_path=data["test"],
                     seed=seeds[0], params=FASTTEXT)  # fmt: skip
    repeatable = again["predictions_crc"] == first["predictions_crc"]

    ours_name = f"ours: `make train` default ({sizes['train_ours']:,} training reviews)"

    def ours(seed: int) -> dict:
        run = train_default(overrides, seed, work / "peer-ours" / f"seed-{seed}")
        print(f"  seed {seed}: {100 * run['test_acc']:.2f}%  {ours_name}", flush=True)
        return run

    with ThreadPoolExecutor(args.peer_jobs) as pool:  # each run is a process of its own
        runs[ours_name] = list(pool.map(ours, seeds))

    rows = []
    for name, name_runs in runs.items():
        accs = [100 * r["test_acc"] for r in name_runs]
        rows.append(
            [
                name,
                f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}",
                " ".join(f"{a:.2f}" for a in accs),
                wall([r["seconds"] for r in name_runs]),
            ]
        )
    header = ["model", "test acc % (mean ± sd)", f"per seed ({seeds[0]}..{seeds[-1]})",
              "wall time per run, mean (min-max)"]  # fmt: skip
    model = ", ".join(f"{k}={v}" for k, v in data["model"].items() if k != "_target_")
    settings = " ".join(f"{k} {v}" for k, v in FASTTEXT.items())
    notes = [
        f"Data: {args.data_dir} (train + test files). Split: our DataModule's, read from it: "
        f"{sizes['train_ours']:,} training + {sizes['val']:,} validation reviews of the train "
        f"file's {sizes['train_all']:,}; every row is tested on the same {sizes['test']:,} test "
        "reviews.",
        f"fastText: {settings}, seeds as shown; text "
        "lowercased, digits to 0, `\\w+|[^\\w\\s]` tokens. Wall time: training + predicting "
        f"the test file (cleaning the text files beforehand: {data['fasttext_prepare_seconds']:.1f}"
        f" s). Seed {seeds[0]} trained twice: "
        + (
            f"identical predictions on all {sizes['test']:,} test reviews (deterministic)."
            if repeatable
            else "the predictions differed (not deterministic)."
        ),
        f"Ours: `python -m lstm_sentiment.train seed=S hydra.run.dir=<tmp> "
        f"{shlex.join(overrides[:1])} paths.cache_dir=<tmp>"
        + (f" {args.peer_overrides}" if args.peer_overrides else "")
        + f"`: the default config{' with those overrides' if args.peer_overrides else ''} "
        f"(max_epochs {data['max_epochs']}; model: {model}); test "
        "accuracy from its metrics.json (test/acc, the best epoch by validation accuracy). Wall "
        "time: the whole process (start, imports, training, test) on a token cache built "
        f"beforehand (tokenizing: {data['tokenize_seconds']:.1f} s, once).",
        f"Threads: fastText {FASTTEXT['thread']}; ours torch's default, "
        f"{data['torch_threads']} (the cores). {args.peer_jobs} run(s) of ours at a time"
        + (
            "."
            if args.peer_jobs == 1
            else ": they shared the cores, so their wall times are not a lone run's (only "
            "--peer-jobs 1 times are honest on 2 cores)."
        )
        + f" {load_before} at the start, {load_average()} at the end.",
    ]
    return table(header, rows) + "\n\n" + "\n".join(notes)


# ---------------------------------------------------------------------------------------------
# 5. ablation: from the previous default to today's, one change at a time

# (what the step changes, the overrides that undo it). Row k of the table is the default with
# every step after k undone: the first row is the previous default, each row adds one change to
# the row above, and the last row is `make train` itself.
ABLATION: list[tuple[str, list[str]]] = [
    ("previous default: the last state, no word or embedding dropout, batch 32, Adam 3e-3, "
     "max_len 120, 5 epochs, no weight average", []),
    ("max pooling over all states", ["model.net.pooling=last"]),
    ("embedding dropout 0.25, word dropout 0.1",
     ["model.net.embedding_dropout=0", "model.net.word_dropout=0"]),
    ("batch 64, Adam 2e-3", ["data.batch_size=32", "model.lr=0.003"]),
    ("max_len 400, up to 8 epochs", ["data.max_len=120", "trainer.max_epochs=5"]),
    ("validate and keep an EMA of the weights (decay 0.998)", ["callbacks.ema=null"]),
]  # fmt: skip


def ablation_section(args, work: Path) -> str:
    if args.ablation_seeds < 2:
        raise SystemExit("--section ablation needs --ablation-seeds 2 or more")
    load_before = load_average()
    common = [f"data.data_dir={args.data_dir.resolve()}", f"paths.cache_dir={work / 'cache'}"]
    common += shlex.split(args.ablation_overrides)
    seeds = list(range(args.ablation_seeds))
    chosen = args.ablation_rows or list(range(1, len(ABLATION) + 1))
    if not set(chosen) <= set(range(1, len(ABLATION) + 1)):
        raise SystemExit(f"--ablation-rows: rows are 1..{len(ABLATION)}, got {chosen}")
    rows_overrides = {}
    for k in chosen:
        change = ABLATION[k - 1][0]
        undo = [o for _, later in ABLATION[k:] for o in later]
        rows_overrides[k] = ((change if k == 1 else f"+ {change}"), undo)

    jobs = [(row, seed) for row in rows_overrides for seed in seeds]

    def run(job: tuple[int, int]) -> dict:
        row, seed = job
        name, undo = rows_overrides[row]
        result = train_default([*common, *undo], seed, work / "ablation" / f"{row}-{seed}")
        print(f"  seed {seed}: val {100 * result['val_acc']:.2f}% test "
              f"{100 * result['test_acc']:.2f}%  {name}", flush=True)  # fmt: skip
        return result

    with ThreadPoolExecutor(args.ablation_jobs) as pool:  # each run is a process of its own
        results = dict(zip(jobs, pool.map(run, jobs), strict=True))

    def spread(values: list[float]) -> str:
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"

    rows = []
    for row, (name, undo) in rows_overrides.items():
        runs = [results[row, seed] for seed in seeds]
        vals, tests = ([100 * r[key] for r in runs] for key in ("val_acc", "test_acc"))
        rows.append([name, " ".join(f"`{o}`" for o in undo) or "(none: `make train`)",
                     spread(vals), spread(tests), " ".join(f"{v:.2f}" for v in vals),
                     " ".join(f"{t:.2f}" for t in tests),
                     wall([r["seconds"] for r in runs])])  # fmt: skip
    span = f"({seeds[0]}..{seeds[-1]})"
    header = ["change (cumulative)", "overrides on the default", "val acc % (best epoch)",
              "test acc %", f"val, per seed {span}", f"test, per seed {span}",
              "wall time per run"]  # fmt: skip
    notes = [
        f"Each cell: mean ± sd over seeds {seeds[0]}..{seeds[-1]} of `python -m "
        "lstm_sentiment.train seed=S <overrides>` (validation: the best epoch's accuracy on the "
        "held-out part of the train file, which picks the checkpoint; test: that checkpoint on "
        f"the test file). Data: {args.data_dir}. {args.ablation_jobs} run(s) at a time"
        + ("." if args.ablation_jobs == 1 else " (wall times are then not a lone run's).")
        + f" {load_before} at the start, {load_average()} at the end.",
    ]
    if args.ablation_overrides:
        notes.append(f"Every run also had: `{args.ablation_overrides}`.")
    return table(header, rows) + "\n\n" + "\n".join(notes)


# ---------------------------------------------------------------------------------------------
# 6. the full set on a CPU: experiment=full_cpu, timed end to end


def full_cpu_section(args, work: Path) -> str:
    """``experiment=full_cpu`` on a full-size data folder: ``--full-data-dir`` (the real set, after
    ``make data``), else train and test files resampled from ``--data-dir`` to the full set's
    3.6M / 400k reviews (same lengths and words as the real reviews, so the same time)."""
    if args.full_data_dir:
        data_dir, what = args.full_data_dir.resolve(), f"the data in {args.full_data_dir}"
    else:
        data_dir = work / "full"
        data_dir.mkdir()
        train_n, test_n = args.full_sizes
        resample(find_review_file(args.data_dir, "train"), data_dir / "train.ft.txt", train_n, 1)
        resample(find_review_file(args.data_dir, "test"), data_dir / "test.ft.txt", test_n, 2)
        what = f"{train_n:,} train / {test_n:,} test reviews drawn with replacement from "
        what += f"{args.data_dir} (accuracy on them says nothing: they repeat the sample)"
    load_before = load_average()
    extra = shlex.split(args.full_overrides)  # e.g. trainer=gpu, on a GPU machine
    overrides = [
        "experiment=full_cpu",
        f"data.data_dir={data_dir}",
        f"paths.cache_dir={work / 'cache'}",
        *extra,
    ]
    run = train_default(overrides, 42, work / "full-run")
    log = (work / "full-run" / "train.log").read_text()
    stamps = {
        phase: _log_time(log, pattern)
        for phase, pattern in [
            ("start", "run folder:"),
            ("fit", "training starts"),
            ("test", "testing "),
            ("end", "metrics, in"),
        ]
    }
    rows = [[
        f"`python -m lstm_sentiment.train {shlex.join(['experiment=full_cpu', *extra])}`",
        f"{run['seconds'] / 60:.1f} min",
        _span(stamps, "start", "fit"), _span(stamps, "fit", "test"), _span(stamps, "test", "end"),
        f"{100 * run['val_acc']:.2f}", f"{100 * run['test_acc']:.2f}",
    ]]  # fmt: skip
    header = ["command", "wall time", "reading + tokenizing", "training (2 epochs + validation)",
              "test", "val acc %", "test acc %"]  # fmt: skip
    notes = [
        f"Data: {what}. Seed 42, torch's default threads (the cores); a token cache of its own, "
        f"built in the run (counted). {load_before} at the start, {load_average()} at the end."
    ]
    return table(header, rows) + "\n\n" + "\n".join(notes)


def _log_time(log: str, pattern: str) -> float | None:
    """The time of the first log line holding ``pattern`` (Hydra's ``[%Y-%m-%d %H:%M:%S,ms]``)."""
    import datetime

    for line in log.splitlines():
        if pattern in line and line.startswith("["):
            stamp = line[1 : line.index("]")]
            return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def _span(stamps: dict, start: str, end: str) -> str:
    if stamps.get(start) is None or stamps.get(end) is None:
        return "?"
    seconds = stamps[end] - stamps[start]
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def main() -> None:
    sections = {
        "preprocess": preprocess_section,
        "train": train_section,
        "accuracy": accuracy_section,
        "scale": scale_section,
        "peer": peer_section,
        "ablation": ablation_section,
        "full_cpu": full_cpu_section,
        "gpu_estimate": lambda args, work: gpu_estimate.section(args.data_dir, work),
    }
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--section",
        choices=[*sections, "all"],
        default="all",
    )
    parser.add_argument("--data-dir", type=Path, default=SAMPLE_DIR)
    parser.add_argument(
        "--workers", type=int, default=None, help="tokenizing processes (all cores)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="interleaved repeats (training: seeds 0..N-1)"
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for training (1: on a busy 2-core machine 2 threads ran 3-40x slower)",
    )
    parser.add_argument(
        "--train-pools", type=int, nargs="*", default=[], help="extra bucket pool sizes (train)"
    )
    parser.add_argument("--acc-seeds", type=int, default=0, help="seeds of the accuracy table")
    parser.add_argument("--acc-epochs", type=int, default=4)
    parser.add_argument("--acc-jobs", type=int, default=1, help="accuracy runs at once")
    parser.add_argument(
        "--acc-pools", type=int, nargs="+", default=[50], help="bucket pool sizes (in batches)"
    )
    parser.add_argument(
        "--acc-raw",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the raw loop in the accuracy table",
    )
    parser.add_argument(
        "--acc-bidirectional",
        action="store_true",
        help="a bidirectional network for the accuracy table (the project's default shape); "
        "needs --no-acc-raw (the recipe's network is one-directional)",
    )
    parser.add_argument("--scale-sizes", type=int, nargs="+", default=[100_000, 400_000])
    parser.add_argument("--scale-tokenizer", default="wordpunct")
    parser.add_argument(
        "--scale-unique-words",
        action="store_true",
        help="give every resampled review a made-up word of its own (a vocabulary-memory stress)",
    )
    parser.add_argument(
        "--peer-seeds", type=int, default=5, help="seeds 1..N of each peer row (fastText, ours)"
    )
    parser.add_argument(
        "--peer-jobs",
        type=int,
        default=1,
        help="training runs of ours at once (1: only then are their wall times a lone run's)",
    )
    parser.add_argument(
        "--peer-overrides",
        default="",
        help="Hydra overrides for every run of ours and its split, e.g. 'trainer.max_epochs=1'",
    )
    parser.add_argument(
        "--ablation-seeds", type=int, default=5, help="seeds 0..N-1 of each ablation row"
    )
    parser.add_argument("--ablation-jobs", type=int, default=1, help="ablation runs at once")
    parser.add_argument(
        "--ablation-rows", type=int, nargs="+", default=None, help="only these rows (1: the first)"
    )
    parser.add_argument(
        "--ablation-overrides", default="", help="Hydra overrides for every ablation run (tests)"
    )
    parser.add_argument(
        "--full-data-dir", type=Path, default=None, help="full_cpu: the real full set (make data)"
    )
    parser.add_argument(
        "--full-sizes", type=int, nargs=2, default=[FULL_SET_SIZES[s] for s in ("train", "test")],
        help="full_cpu without --full-data-dir: train and test reviews to resample",
    )  # fmt: skip
    parser.add_argument(
        "--full-overrides", default="", help="full_cpu: Hydra overrides, e.g. 'trainer=gpu'"
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="for inputs and caches (tmp)")
    args = parser.parse_args()
    # "train" holds the accuracy table with --acc-seeds; "peer" runs on its own (5 default
    # training runs: most of an hour)
    every = ["preprocess", "train", "scale", "peer", "gpu_estimate"]
    chosen = every if args.section == "all" else [args.section]
    titles = {
        "preprocess": "1. Preprocessing: reference recipe vs ours",
        "train": "2. Training throughput and accuracy at equal config",
        "accuracy": "2b. Test accuracy: fixed 200 vs bucketed, more seeds and epochs",
        "scale": "3. Scale: our cold preprocessing and warm load",
        "peer": "4. The peer: fastText with word bigrams vs our default `make train`",
        "ablation": "5. Ablation: from the previous default to `make train`, one change at a time",
        "full_cpu": "6. The full set on 2 CPU cores: experiment=full_cpu",
        "gpu_estimate": "7. One GPU, estimated: the README's runs at DeepBench's V100 LSTM times",
    }
    with tempfile.TemporaryDirectory(dir=args.work_dir, prefix="bench-") as tmp:
        for name in chosen:
            started = time.perf_counter()
            body = sections[name](args, Path(tmp))
            took = time.perf_counter() - started
            print(f"\n### {titles[name]}\n\n{body}\n(section took {took:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
