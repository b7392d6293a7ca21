"""What every task shares: the `TASKS` registry, checks of config sections, the fit clock, writing the results files."""
from __future__ import annotations

import json
import os
import time

import jax
import ml_collections

from jaxnn.config import build_optimizer
from jaxnn.io import write_atomic
from jaxnn.registry import Registry
from jaxnn.training.history import History
from jaxnn.validation import integer, require

TASKS: Registry = Registry("task")


class FitClock:
    """Seconds spent inside the `with` blocks it times (the fit calls: results.json's `train_seconds`), summed."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self._start


def config_section(config: ml_collections.ConfigDict, name: str, defaults: dict) -> dict:
    """`config.<name>` as a dict over `defaults`, an unknown field rejected with the allowed ones listed."""
    given = config.get(name) or {}
    given = given.to_dict() if isinstance(given, ml_collections.ConfigDict) else dict(given)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown field {name}.{unknown[0]}; allowed: {', '.join(defaults)}")
    return {**defaults, **given}


def required_section(config: ml_collections.ConfigDict, name: str) -> dict:
    if name not in config:
        raise ValueError(f"config section {name!r} is missing")
    return config[name].to_dict()


def check_sections(config: ml_collections.ConfigDict, allowed: tuple[str, ...]) -> int:
    """Reject an unknown section (a `sweep` is the classify task's alone); returns the checked `seed`."""
    if "sweep" in config and "sweep" not in allowed:
        raise ValueError(f"sweep trains the members of a classify run; task {config.get('task')!r} takes no "
                         "sweep section")
    unknown = sorted(set(config.keys()) - set(allowed))
    if unknown:
        raise ValueError(f"unknown config section {unknown[0]!r}; allowed: {', '.join(allowed)}")
    seed = config.get("seed", 0)
    return integer("seed", seed)


def image_dataset(dataset: dict):
    """The `DatasetSpec` of `dataset.name`, which must be an image dataset."""
    from jaxnn import data
    from jaxnn.data.specs import IMAGE_DATASETS

    require("dataset.name", dataset["name"], dataset["name"] in IMAGE_DATASETS, f"one of {', '.join(IMAGE_DATASETS)}")
    return data.dataset_info(dataset["name"])


def optimizer_section(field: str, value) -> dict:
    require(field, value, isinstance(value, (dict, ml_collections.ConfigDict)) and "name" in value,
             "an optimizer section such as {'name': 'adam', 'learning_rate': 1e-3}")
    return dict(value)


def phase_optimizer(field: str, options: dict, total_steps: int = 2**31 - 1):
    try:
        return build_optimizer(options, total_steps)
    except ValueError as e:
        raise ValueError(f"{field}: {e}") from None


def write_results(config: ml_collections.ConfigDict, workdir: str, results: dict,
                  history: History | dict[str, History] | None, print_fn) -> dict:
    """results.json, config.json and history.json (a History, or one per phase) into `workdir`; prints the scalars.

    In a multi-process run only process 0 writes and prints.
    """
    if jax.process_index() != 0:
        return results
    os.makedirs(workdir, exist_ok=True)
    if history is not None:
        logs = history.history if isinstance(history, History) else {k: h.history for k, h in history.items()}
        write_atomic(os.path.join(workdir, "history.json"), json.dumps(logs, indent=2))
    write_atomic(os.path.join(workdir, "config.json"), config.to_json(indent=2))
    write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
    if print_fn is not None:
        print_fn(" - ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in results.items()
                            if not isinstance(v, (list, dict))))
    return results
