"""`run(config, workdir)`: the whole experiment behind `train.py`.

Validate the config, load the data, train, evaluate on the test split, and
write into the workdir: `history.json`, `results.json`, `curves.png`,
`config.json` and the final parameters as an orbax checkpoint.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

import jax
import ml_collections

from jaxnn.checkpoint import save_tree
from jaxnn.config import build
from jaxnn.models import summary
from jaxnn.training.history import plot_history


def write_atomic(path: str, data: str | bytes) -> None:
    """Write a file so that readers see the old content or the new, never half of it."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _save_curves(history, path: str) -> None:
    tmp = os.path.join(os.path.dirname(path), ".tmp-curves.png")
    plot_history(history, tmp)
    os.replace(tmp, path)


def run(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> dict:
    """Train and evaluate the experiment described by `config`; returns the results dict."""
    from jaxnn import data

    started = time.perf_counter()
    experiment = build(config)  # every config error surfaces here, before any I/O
    ds = experiment.dataset
    x_train, y_train = data.load_arrays(ds["name"], ds.get("train_split", "train"), data_dir=ds.get("data_dir"))
    x_test, y_test = data.load_arrays(ds["name"], ds.get("test_split", "test"), data_dir=ds.get("data_dir"))

    trainer, train = experiment.trainer, experiment.train
    state = trainer.init(jax.random.key(experiment.seed), x_train.shape[1:])
    summary(trainer.model, x_train.shape[1:], params=state.params, state=state.model_state, print_fn=print_fn)
    state, history = trainer.fit(
        state, x_train, y_train, epochs=train["epochs"], batch_size=train["batch_size"],
        validation_split=train.get("validation_split", 0.0), shuffle=train.get("shuffle", True),
        verbose=int(print_fn is not None),
    )
    test = trainer.evaluate(state, x_test, y_test, batch_size=experiment.eval["batch_size"])
    results = {f"test_{k}": v for k, v in test.items()}
    results.update(epochs=len(history.epoch), wall_seconds=round(time.perf_counter() - started, 2),
                   train_examples=int(x_train.shape[0]), test_examples=int(x_test.shape[0]))

    os.makedirs(workdir, exist_ok=True)
    if experiment.checkpoint.get("save_final", True):
        save_tree(os.path.join(workdir, "checkpoints", "final"),
                  {"params": state.params, "model_state": state.model_state})
    _save_curves(history, os.path.join(workdir, "curves.png"))
    write_atomic(os.path.join(workdir, "history.json"), history.to_json())
    write_atomic(os.path.join(workdir, "config.json"), config.to_json(indent=2))
    write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
    if print_fn is not None:
        print_fn(" - ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in results.items()))
    return results
