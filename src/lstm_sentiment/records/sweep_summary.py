"""The sweep summary: one row per trial (what it overrode, how it did), best first.

``SweepSummary`` is a Hydra callback (``hydra.callbacks`` in ``conf/hydra/default.yaml``): it
rewrites ``summary.csv`` and ``summary.md`` in the sweep folder after every job, so a sweep cut
short still has one, and prints the table when the sweep ends. It reads each job folder's
``.hydra/overrides.yaml`` and the ``metrics.json`` that ``train`` (or its failure) left there.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lstm_sentiment.records.trials import read_job_result

# metrics worth a column: the final validation and test numbers
METRIC_PREFIXES = ("val/", "test/")


@dataclass
class Trial:
    job: int
    status: str  # ok | failed
    overrides: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def read_trials(sweep_dir: str | Path) -> list[Trial]:
    """Every job folder of a sweep (those with ``.hydra/overrides.yaml``), by job number."""
    trials = []
    for overrides_file in Path(sweep_dir).glob("*/.hydra/overrides.yaml"):
        job_dir = overrides_file.parent.parent
        if not job_dir.name.isdigit():
            continue
        overrides = [str(o) for o in OmegaConf.load(overrides_file)]
        result = read_job_result(job_dir)
        trials.append(
            Trial(
                job=int(job_dir.name),
                status=result["status"],
                overrides=dict(o.split("=", 1) for o in overrides if "=" in o),
                metrics=result["metrics"],
                error=result["error"],
            )
        )
    return sorted(trials, key=lambda t: t.job)


def rank_trials(
    trials: list[Trial], metric: str | None, direction: str = "maximize"
) -> list[Trial]:
    """Best first by ``metric``; trials without a finite value (failed ones) last, by job."""
    sign = -1.0 if direction == "maximize" else 1.0

    def key(trial: Trial) -> tuple:
        value = trial.metrics.get(metric, math.nan) if metric else math.nan
        if trial.status != "ok" or not math.isfinite(value):
            return (1, 0.0, trial.job)
        return (0, sign * value, trial.job)

    return sorted(trials, key=key)


def summary_table(
    trials: list[Trial],
    metric: str | None = None,
    direction: str = "maximize",
    sweep_overrides: list[str] = (),
) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: job, status, the overrides the sweep chose (not the plain ones of its
    command line, which every trial shares), then the metrics, ``metric`` first."""
    parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
    shared = {o.get_key_element() for o in parsed if not o.is_sweep_override()}
    params = _union(k for t in trials for k in t.overrides if k not in shared)
    metrics = _union(k for t in trials for k in t.metrics if k.startswith(METRIC_PREFIXES))
    if metric:
        metrics = [metric, *(m for m in metrics if m != metric)]
    header = ["job", "status", *params, *metrics]
    if any(t.error for t in trials):
        header.append("error")
    rows = []
    for t in rank_trials(trials, metric, direction):
        row = [t.job, t.status, *(t.overrides.get(p, "") for p in params)]
        row += [t.metrics.get(m, "") for m in metrics]
        if "error" in header:
            row.append(t.error or "")
        rows.append(row)
    return header, rows


def _union(keys) -> list[str]:
    return list(dict.fromkeys(keys))


def to_markdown(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    try:  # sampled floats like 0.0012345678901 read better short
        number = float(text)
    except ValueError:
        return text if len(text) <= 80 else text[:77] + "..."
    return f"{number:.3g}" if "." in text or "e" in text.lower() else text


def write_summary(
    sweep_dir: str | Path,
    metric: str | None = None,
    direction: str = "maximize",
    sweep_overrides: list[str] = (),
) -> str:
    """Write ``summary.csv`` and ``summary.md`` into ``sweep_dir``; return the Markdown table."""
    header, rows = summary_table(read_trials(sweep_dir), metric, direction, sweep_overrides)
    with open(Path(sweep_dir) / "summary.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    markdown = to_markdown(header, rows)
    (Path(sweep_dir) / "summary.md").write_text(markdown)
    return markdown


class SweepSummary(Callback):
    """Hydra callback: the summary table of a multirun, printed and written to its folder."""

    def __init__(self, metric: str | None = None, direction: str = "maximize"):
        self.metric = metric
        # Optuna's config may hold its Direction enum rather than a string
        self.direction = getattr(direction, "name", direction)
        self.sweep_overrides: list[str] | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_overrides = list(config.hydra.overrides.task)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if self.sweep_overrides is not None:  # a job of a sweep run from this process
            self._write(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        markdown = self._write(config)
        print(f"\nSweep summary ({config.hydra.sweep.dir}/summary.md, best first):\n{markdown}")

    def _write(self, config: DictConfig) -> str:
        return write_summary(
            config.hydra.sweep.dir, self.metric, self.direction, self.sweep_overrides or []
        )
