"""`run(config, workdir)`: the whole experiment behind `train.py`.

Dispatches on the config's `task` (default "classify"; see `jaxnn.tasks`), then
writes the task's results into the workdir: results.json, config.json and,
where the task keeps a History, history.json.
"""
from __future__ import annotations

import ml_collections

from jaxnn.tasks import TASKS
from jaxnn.training.guard import NonFiniteError
from jaxnn.tasks.common import write_results

__all__ = ["NonFiniteError", "run"]


def run(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> dict:
    """Run the task `config.task` names and write its results files; returns the results dict.

    Raises ValueError for a bad config or a workdir of another run (nothing
    written), `TrainingInterrupted` after a SIGTERM (a checkpoint saved) and
    `NonFiniteError` when a classifier's loss or gradient went NaN/inf.
    """
    results, history = TASKS.get(config.get("task", "classify"))(config, workdir, print_fn=print_fn)
    return write_results(config, workdir, results, history, print_fn)
