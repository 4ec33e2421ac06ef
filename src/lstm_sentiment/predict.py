"""Predict reviews with a trained checkpoint: ``python -m lstm_sentiment.predict ckpt_path=PATH``.

Reviews come from ``text=`` arguments (each one review, taken verbatim, so quotes and commas need no
Hydra escaping), else ``input=FILE`` (one review per line, or a fastText/CSV review file), else
standard input (one review per line). Output is JSON Lines (``text``, ``probability``, ``label``,
``known_tokens``, and ``target`` when the input was labelled) on stdout or ``output=FILE``; logs go
to stderr. ``per_token=true`` prints what each token does to the prediction instead
(``plot=FILE.png`` draws it): see ``inference.TokenView``.

Plain lines give one output line per input line: a blank line gets ``"probability": null`` (and a
warning), so line N of the output is line N of the input. A review with no token the vocabulary
knows gets ``"known_tokens": 0`` and a warning: its probability says nothing about its words.
``output=FILE`` is written whole or not at all (``atomic_output``), never over the input or the
checkpoint.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import IO

import hydra
import torch
from omegaconf import DictConfig

from lstm_sentiment.atomic_output import AtomicOutput, OutputError, refuse_overwrite
from lstm_sentiment.config import CONFIG_DIR
from lstm_sentiment.data.reviews import FORMATS, read_input_file, read_lines
from lstm_sentiment.data.vocab import UNK_ID
from lstm_sentiment.errors import user_errors_exit
from lstm_sentiment.inference import (
    InputError,
    Predictor,
    TokenView,
    checkpoint_path,
    load_predictor,
)

log = logging.getLogger("lstm_sentiment.predict")

INPUT_FORMATS = ("auto", "lines", *FORMATS)
Review = tuple[str, int | None]  # text, and its label when the input file had one


# -- reading reviews ----------------------------------------------------------------------------


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# key -> (test, what it must be): predict's own settings, checked before anything is read
OPTIONS = {
    "batch_size": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    "threads": (lambda v: v is None or (_whole(v) and v >= 1), "a whole number >= 1, or null"),
    "threshold": (
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1,
        "a number in [0, 1]",
    ),
}


def check_options(cfg: DictConfig) -> None:
    for key, (ok, rule) in OPTIONS.items():
        if not ok(cfg.get(key)):
            raise InputError(f"{key}={cfg.get(key)!r} is invalid: it must be {rule}")


def read_input(cfg: DictConfig, texts: Iterable[str], stdin: IO[bytes] | None) -> Iterator[Review]:
    """The reviews to predict, ``("", None)`` for a blank line of plain lines."""
    texts = [*cfg.get("text", []), *texts]
    if texts and cfg.get("input"):
        raise InputError("give reviews as text= arguments or as input=FILE, not both")
    if texts:
        for i, text in enumerate(texts, 1):
            if not text.strip():
                raise InputError(f"text argument {i} is empty")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:  # bytes the shell passed that are not UTF-8
                raise InputError(
                    f"text argument {i} is not UTF-8 (a bad byte at character {e.start + 1})"
                ) from None
        return ((text, None) for text in texts)
    source = cfg.get("input") or "-"
    if source == "-":
        if stdin is None:
            raise InputError(
                "no reviews given and standard input is closed: pass text=REVIEW or input=FILE"
            )
        if stdin.isatty():
            raise InputError(
                "no reviews given: pass text=REVIEW, input=FILE, or pipe reviews to stdin"
            )
        return ((text, None) for text in read_lines(stdin, "stdin"))
    if not Path(source).is_file():
        raise InputError(f"{source}: no such input file")
    fmt = cfg.get("input_format", "auto")
    if fmt not in INPUT_FORMATS:
        raise InputError(f"input_format must be one of {INPUT_FORMATS}, got {fmt!r}")
    return read_input_file(source, fmt)


def not_only_blank(reviews: Iterator[Review]) -> Iterator[Review]:
    """``reviews`` again, once it is known to hold one that is not blank."""
    head = []
    for review in reviews:
        head.append(review)
        if review[0]:
            return chain(head, reviews)
    raise InputError("no reviews in the input (only blank lines?)")


def batches(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


# -- output -------------------------------------------------------------------------------------


def per_token_table(view: TokenView) -> str:
    """One row per token: its value, a bar, and notes (unknown words; where a prefix reading
    flips; the strongest shares), then how the values make the prediction."""
    width = max(len(t) for t in view.tokens)
    if view.reading == "prefix":
        rows = [f"{'#':>4}  {'token':<{width}}  p(pos) so far"]
        bars = ["#" * round(p * 20) for p in view.values]
    else:
        rows = [f"{'#':>4}  {'token':<{width}}  share of the logit"]
        scale = max(abs(v) for v in view.values) or 1.0
        bars = [("+" if v > 0 else "-") * round(10 * abs(v) / scale) for v in view.values]
        strongest = {view.values.index(max(view.values)): "<- most positive",
                     view.values.index(min(view.values)): "<- most negative"}  # fmt: skip
    for i, (token, value, bar) in enumerate(zip(view.tokens, view.values, bars, strict=True)):
        notes = ["(unknown word)"] if view.ids[i] == UNK_ID else []
        if view.reading == "prefix":
            if i and (value >= 0.5) != (view.values[i - 1] >= 0.5):
                notes.append("<- turns " + ("positive" if value >= 0.5 else "negative"))
            shown = f"{value:.3f}"
        else:
            notes += [strongest[i]] if i in strongest else []
            shown = f"{value:+.3f}"
        rows.append(f"{i + 1:>4}  {token:<{width}}  {shown}  {bar:<20}  {' '.join(notes)}".rstrip())
    if view.reading == "share":
        total = sum(view.values)
        rows.append(
            f"bias {view.bias:+.3f} + shares {total:+.3f} = logit {view.bias + total:+.3f}: "
            f"p(positive) {view.probability:.3f}"
        )
    elif view.reading == "occlusion":
        rows.append(
            f"p(positive) {view.probability:.3f}; each value: what the logit loses when the token "
            "becomes unknown (these do not add up to the logit)"
        )
    return "\n".join(rows)


def plot_per_token(view: TokenView, path: str, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plot= needs matplotlib: pip install matplotlib") from None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(view.tokens)), 3.5))
    steps = range(len(view.tokens))
    if view.reading == "prefix":
        ax.plot(steps, view.values, marker="o", markersize=3)
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("p(positive) so far")
    else:
        colors = ["tab:green" if v > 0 else "tab:red" for v in view.values]
        ax.bar(steps, view.values, color=colors)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_ylabel("share of the logit" if view.reading == "share" else "logit lost if unknown")
    ax.set_xticks(steps, view.tokens, rotation=90, fontsize=8)
    ax.set_title(f"p(positive) {view.probability:.3f}: {title}"[:90], fontsize=9)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format=Path(path).suffix[1:] or "png", dpi=120)
    plt.close(fig)
    with AtomicOutput(path, binary=True) as out:
        out.write(image.getvalue())


def explain(predictor: Predictor, reviews: list[Review], out: IO[str], plot: str | None) -> None:
    reviews = [review for review in reviews if review[0]]  # a blank line has no tokens to show
    if plot and len(reviews) != 1:
        raise InputError(f"plot= draws one review; got {len(reviews)}")
    for text, _ in reviews:
        view = predictor.per_token(text)
        out.write(f"{text}\n{per_token_table(view)}\n\n")
        if all(i == UNK_ID for i in view.ids):
            log.warning("no token of %r is in the vocabulary: its probability says nothing "
                        "about its words", text[:60])  # fmt: skip
        if plot:
            plot_per_token(view, plot, text)
            log.info("per-token plot written to %s", plot)


# -- the pure function and the CLI --------------------------------------------------------------


def predict(
    cfg: DictConfig,
    texts: Iterable[str] = (),
    stdin: IO[bytes] | None = None,
    stdout: IO[str] | None = None,
) -> int:
    """Predict every review ``cfg`` (and ``texts``) name; return how many lines were written."""
    check_options(cfg)
    ckpt = checkpoint_path(cfg)
    source = cfg.get("input") if cfg.get("input") != "-" else None
    for key in ("output", "plot"):
        if cfg.get(key):
            refuse_overwrite(cfg[key], {"checkpoint": ckpt, "input": source})
    if cfg.get("output") and cfg.get("plot"):
        refuse_overwrite(cfg.plot, {"output": cfg.output})
    if stdin is None and sys.stdin is not None:
        stdin = sys.stdin.buffer
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    with ExitStack() as stack:
        out = stdout or sys.stdout  # resolved now, so a caller's redirection of sys.stdout counts
        if cfg.output:  # a temporary file now (an unwritable folder fails here), renamed at the end
            out = stack.enter_context(AtomicOutput(cfg.output))
        elif out is None:
            raise OutputError("standard output is closed: write to output=FILE")
        reviews = read_input(cfg, texts, stdin)
        predictor = load_predictor(ckpt, cfg.device)
        reviews = not_only_blank(reviews)
        if cfg.per_token:
            explain(predictor, list(reviews), out, cfg.get("plot"))
            return 0
        return write_predictions(predictor, reviews, out, cfg.batch_size, cfg.threshold)


@dataclass
class Lines:
    """Output line numbers of one kind: how many, and the first few."""

    count: int = 0
    first: list[int] = field(default_factory=list)

    def add(self, line: int) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(line)

    def __str__(self) -> str:
        return ", ".join(map(str, self.first)) + (", ..." if self.count > len(self.first) else "")


def write_predictions(
    predictor: Predictor, reviews: Iterable[Review], out: IO[str], batch_size: int, threshold: float
) -> int:
    started, n = time.perf_counter(), 0
    blank, unknown = Lines(), Lines()
    for chunk in batches(reviews, batch_size):
        probs, known = predictor.predict([text for text, _ in chunk if text])
        results = zip(probs, known, strict=True)
        for text, target in chunk:
            n += 1
            if not text:
                blank.add(n)
                record = {"text": "", "probability": None, "label": None, "known_tokens": 0}
            else:
                p, k = next(results)
                label = "positive" if p >= threshold else "negative"
                record = {"text": text, "probability": p, "label": label, "known_tokens": k}
                if k == 0:
                    unknown.add(n)
            if target is not None:
                record["target"] = "positive" if target else "negative"
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    seconds = time.perf_counter() - started
    log.info(
        "%d reviews in %.2f s (%.0f reviews/s) on %s",
        n - blank.count, seconds, (n - blank.count) / seconds, predictor.device,
    )  # fmt: skip
    if blank.count:
        log.warning(
            "%d blank input line(s) (lines %s) got null predictions, so output line N is input "
            "line N", blank.count, blank,
        )  # fmt: skip
    if unknown.count:
        log.warning(
            '%d review(s) hold no word the vocabulary knows (output lines %s: "known_tokens": 0): '
            "their probability says nothing about their text", unknown.count, unknown,
        )  # fmt: skip
    return n


def take_text_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``text=...`` arguments (kept verbatim) from the Hydra overrides."""
    texts = [a.partition("=")[2] for a in argv if a.startswith("text=")]
    return texts, [a for a in argv if not a.startswith("text=")]


def main() -> None:
    texts, sys.argv[1:] = take_text_args(sys.argv[1:])

    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
    def run(cfg: DictConfig) -> None:
        # Hydra's logging is off (predict.yaml), so stdout carries JSON Lines only
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        try:
            with user_errors_exit():
                predict(cfg, texts)
        except BrokenPipeError:  # `... | head`: the reader left, which is not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    run()


if __name__ == "__main__":
    main()
