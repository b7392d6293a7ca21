"""`run(config, workdir)`: the whole experiment behind `train.py`.

Dispatches on the config's `task` (default "classify"; see `jaxnn.tasks`), then
writes the task's results into the workdir: results.json, config.json and,
where the task keeps a History, history.json.
"""
from __future__ import annotations

import os

import ml_collections

from jaxnn.checkpoint import lock
from jaxnn.tasks import TASKS
from jaxnn.training.guard import NonFiniteError
from jaxnn.tasks.common import write_results

__all__ = ["NonFiniteError", "run"]


# What tasks write into a workdir, as directories and as files: something else in their place (a file where a
# directory goes, a directory where a file goes) is refused before any work.
OUTPUT_DIRS = ("checkpoints", "tensorboard", "samples", "model")
OUTPUT_FILES = ("results.json", "config.json", "history.json", "history.csv", "curves.png", "confusion_matrix.png",
                "errors.png", "largest_gradients.json", "largest_gradients.png")


def check_workdir(workdir: str) -> None:
    """`workdir` must be a directory we can write (or one we can make); checked without creating anything."""
    path = os.path.abspath(os.fspath(workdir))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"workdir {workdir} is a file, not a directory: give a directory (it is made if missing)")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"workdir {workdir} cannot be made: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"workdir {workdir} is not writable: {existing} is not writable by you; give a --workdir "
                         "you can write to")
    for name in OUTPUT_DIRS:
        out = os.path.join(path, name)
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"{out} is a file where the run writes a directory: move it away or give another "
                             "workdir")
        if os.path.isdir(out) and not os.access(out, os.W_OK | os.X_OK):
            raise ValueError(f"{out} is not writable by you; give a --workdir you can write to")
    for name in OUTPUT_FILES:
        out = os.path.join(path, name)
        if os.path.isdir(out):
            raise ValueError(f"{out} is a directory where the run writes a file: move it away or give another "
                             "workdir")


def run(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> dict:
    """Run the task `config.task` names and write its results files; returns the results dict.

    Raises ValueError for a bad config, a workdir that is a file or not
    writable, or a workdir of another run (nothing written),
    `TrainingInterrupted` after a SIGTERM (a checkpoint saved) and
    `NonFiniteError` when a classifier's loss or gradient went NaN/inf.
    """
    check_workdir(workdir)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(f"config must be an ml_collections.ConfigDict, got {type(config).__name__}")
    try:
        results, history = TASKS.get(config.get("task", "classify"))(config, workdir, print_fn=print_fn)
        return write_results(config, workdir, results, history, print_fn)
    finally:  # a task that checkpoints holds the workdir's lock until its results are written
        lock.release(os.path.join(workdir, "checkpoints"))
