"""Hydra's Optuna sweeper, made resumable: a killed sweep goes on where it stopped.

hydra-optuna-sweeper 1.3.0 already loads an existing study from ``hydra.sweeper.storage``, but then
runs ``n_trials`` more trials and numbers their job folders from 0 again, over the folders of the
first run. ``ResumableOptunaSweeper`` (``conf/hparams_search/lstm_optuna.yaml``) runs only the
trials still missing, numbers new jobs after the study's trials (job folder ``N`` is Optuna trial
``N``), records the trials the dead sweep left running as failed (they never reported back), and
reseeds the sampler, whose seed would otherwise repeat the first run's random draws.

Hydra loads sweepers only from the ``hydra_plugins`` package, and imports every module in it at
start-up: so this one imports Optuna only when a sweep uses it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper

log = logging.getLogger(__name__)


def resume_study(storage: str, study_name: str) -> tuple[int, int]:
    """Mark the trials a killed sweeper left RUNNING as FAILED; return (trials in the study,
    trials that had finished before). A new study: (0, 0)."""
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study yet
        return 0, 0
    trials = study.get_trials(deepcopy=False)
    interrupted = [t for t in trials if t.state == TrialState.RUNNING]
    for trial in interrupted:
        study.tell(trial.number, state=TrialState.FAIL)
    if trials:
        log.info(
            "resuming study %r: %d finished trials kept, %d interrupted ones marked failed",
            study_name,
            len(trials) - len(interrupted),
            len(interrupted),
        )
    return len(trials), len(trials) - len(interrupted)


class ResumableOptunaSweeper(Sweeper):
    """hydra-optuna-sweeper's ``OptunaSweeper`` (same settings), counting the study's finished
    trials towards ``n_trials``."""

    def __init__(self, **settings: Any) -> None:
        from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

        self.optuna = OptunaSweeper(**settings)

    def setup(self, **kwargs: Any) -> None:
        self.optuna.setup(**kwargs)

    def sweep(self, arguments: list[str]) -> None:
        impl = self.optuna.sweeper
        # an SQLite file in the sweep folder needs the folder before the study is opened
        Path(impl.sweep_dir).mkdir(parents=True, exist_ok=True)
        if impl.storage:
            n_trials, n_finished = resume_study(impl.storage, impl.study_name)
            impl.n_trials = max(impl.n_trials - n_finished, 0)
            impl.job_idx = n_trials
            if n_trials and hasattr(impl.sampler, "reseed_rng"):
                # a seeded sampler would draw the first run's random trials again
                impl.sampler.reseed_rng()
        return impl.sweep(arguments)
