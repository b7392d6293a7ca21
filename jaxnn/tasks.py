"""Experiments other than `run`'s image classification, picked by a config's `task` field.

    python train.py --config configs/perceptron_and.py --workdir runs/and     # task = "perceptron"
    python train.py --config configs/xor_mlp.py --workdir runs/xor            # task = "perceptron_vs_mlp"
    python train.py --config configs/imdb_multihot.py --workdir runs/imdb     # task = "text_classification"

A task is `fn(config, workdir, *, print_fn=print) -> results dict`. Like `run`,
each one checks its whole config before it reads data or writes a file, a bad
field stopping it with one line naming the field, the value and what is
allowed; at the end it writes `results.json` and `config.json` into the workdir.
"""
from __future__ import annotations

import json
import numbers
import os
import time

import jax
import ml_collections
import numpy as np

from jaxnn import perceptron
from jaxnn.checkpoint import save_tree
from jaxnn.config import build, build_loss, build_model, build_optimizer
from jaxnn.data import toy
from jaxnn.models import summary
from jaxnn.registry import Registry
from jaxnn.training.history import plot_history, write_atomic
from jaxnn.training.trainer import Trainer

TASKS: Registry = Registry("task")

_PERCEPTRON_FIELDS = {"epochs": 20, "learning_rate": 1.0, "shuffle": True}
_GATE_FIELDS = {"name": "and", "repeats": 1}


def _require(field: str, value, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{field} must be {allowed}, got {value!r}")


def _positive_int(field: str, value) -> int:
    _require(field, value, isinstance(value, int) and not isinstance(value, bool) and value > 0, "a positive integer")
    return value


def _section(config: ml_collections.ConfigDict, name: str, defaults: dict) -> dict:
    """`config.<name>` as a dict over `defaults`, an unknown field rejected with the allowed ones listed."""
    given = config.get(name) or {}
    given = given.to_dict() if isinstance(given, ml_collections.ConfigDict) else dict(given)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown field {name}.{unknown[0]}; allowed: {', '.join(defaults)}")
    return {**defaults, **given}


def _required(config: ml_collections.ConfigDict, name: str) -> dict:
    if name not in config:
        raise ValueError(f"config section {name!r} is missing")
    return config[name].to_dict()


def _check_sections(config: ml_collections.ConfigDict, allowed: tuple[str, ...]) -> int:
    """Reject an unknown section; returns the checked `seed`."""
    unknown = sorted(set(config.keys()) - set(allowed))
    if unknown:
        raise ValueError(f"unknown config section {unknown[0]!r}; allowed: {', '.join(allowed)}")
    seed = config.get("seed", 0)
    _require("seed", seed, isinstance(seed, int) and not isinstance(seed, bool), "an integer")
    return seed


def _gate_data(config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    dataset = _section(config, "dataset", _GATE_FIELDS)
    _require("dataset.name", dataset["name"], dataset["name"] in toy.GATES, f"one of {', '.join(toy.GATES)}")
    return toy.logic_gate(dataset["name"], repeats=_positive_int("dataset.repeats", dataset["repeats"]))


def _perceptron_options(config: ml_collections.ConfigDict, name: str) -> dict:
    options = _section(config, name, _PERCEPTRON_FIELDS)
    _positive_int(f"{name}.epochs", options["epochs"])
    rate = options["learning_rate"]
    _require(f"{name}.learning_rate", rate,
             isinstance(rate, numbers.Real) and not isinstance(rate, bool) and rate > 0, "a positive number")
    _require(f"{name}.shuffle", options["shuffle"], isinstance(options["shuffle"], bool), "True or False")
    return options


def _train_perceptron(x, y, options: dict, key) -> dict:
    """Fit from zero weights; accuracy on (x, y), mistakes per epoch, first epoch without one (or None)."""
    params, mistakes = perceptron.fit(perceptron.init(x.shape[1]), x, y, epochs=options["epochs"],
                                      learning_rate=float(options["learning_rate"]),
                                      key=key if options["shuffle"] else None)
    mistakes = [int(m) for m in mistakes]
    return {
        "accuracy": perceptron.accuracy(params, x, y),
        "mistakes_per_epoch": mistakes,
        "converged_epoch": next((i + 1 for i, m in enumerate(mistakes) if m == 0), None),
        "predictions": [int(p) for p in perceptron.predict(params, toy.INPUTS)],
        "kernel": [float(w) for w in params["kernel"]],
        "bias": float(params["bias"]),
    }


def _write_results(config: ml_collections.ConfigDict, workdir: str, results: dict, print_fn) -> dict:
    os.makedirs(workdir, exist_ok=True)
    write_atomic(os.path.join(workdir, "config.json"), config.to_json(indent=2))
    write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
    if print_fn is not None:
        print_fn(" - ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in results.items()
                            if not isinstance(v, (list, dict))))
    return results


@TASKS.register("perceptron")
def perceptron_task(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> dict:
    """Rosenblatt's rule on a logic gate (`dataset.name`): accuracy on its truth table, mistakes per epoch.

    Sections: `dataset` (name: and/or/xor, repeats), `train` (epochs,
    learning_rate, shuffle: a fresh example order each epoch from `seed`).
    """
    started = time.perf_counter()
    seed = _check_sections(config, ("task", "seed", "dataset", "train"))
    x, y = _gate_data(config)
    options = _perceptron_options(config, "train")
    results = _train_perceptron(x, y, options, jax.random.key(seed))
    results["wall_seconds"] = round(time.perf_counter() - started, 2)
    return _write_results(config, workdir, results, print_fn)


@TASKS.register("perceptron_vs_mlp")
def perceptron_vs_mlp(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> dict:
    """A single perceptron and an MLP trained by the Trainer on the same gate; both accuracies.

    Sections: `dataset` (name, repeats), `perceptron` (as the perceptron task's
    `train`), then as a classification config: `model` (one sigmoid output:
    `num_classes` is 1), `loss`, `optimizer`, `train` (epochs, batch_size, shuffle).
    """
    started = time.perf_counter()
    seed = _check_sections(config, ("task", "seed", "dataset", "perceptron", "model", "loss", "optimizer", "train"))
    x, y = _gate_data(config)
    options = _perceptron_options(config, "perceptron")
    train = _section(config, "train", {"epochs": None, "batch_size": None, "shuffle": True})
    _positive_int("train.epochs", train["epochs"])
    batch_size = _positive_int("train.batch_size", train["batch_size"])
    _require("train.batch_size", batch_size, batch_size <= len(y), f"at most the {len(y)} examples")
    total_steps = train["epochs"] * (len(y) // batch_size)
    trainer = Trainer(build_model(_required(config, "model"), 1), loss=build_loss(_required(config, "loss")),
                      optimizer=build_optimizer(_required(config, "optimizer"), total_steps), metrics=("accuracy",))
    trainer.check_data(jax.eval_shape(lambda: trainer.init(0, x.shape[1:])), x, y)

    perceptron_key, mlp_key = jax.random.split(jax.random.key(seed))
    single = _train_perceptron(x, y, options, perceptron_key)
    state, history = trainer.fit(trainer.init(mlp_key, x.shape[1:]), x, y, epochs=train["epochs"],
                                 batch_size=train["batch_size"], shuffle=train["shuffle"], verbose=0)
    mlp = trainer.evaluate(state, x, y, batch_size=len(y))
    results = {
        "perceptron_accuracy": single["accuracy"],
        "mlp_accuracy": mlp["accuracy"],
        "mlp_loss": mlp["loss"],
        "perceptron_predictions": single["predictions"],
        "mlp_predictions": [int(p) for p in trainer.predict_classes(state, toy.INPUTS)],
        "perceptron_mistakes_per_epoch": single["mistakes_per_epoch"],
        "mlp_loss_per_epoch": history.history["loss"],
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    return _write_results(config, workdir, results, print_fn)


@TASKS.register("text_classification")
def text_task(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> dict:
    """`run`'s classification on a text dataset, vectorized as the `dataset` fields say (see `TextEncoding`).

    The vocabulary comes from `dataset.train_split` only and encodes both splits.
    Writes what `run` writes: history.json, results.json, curves.png, config.json
    and the final parameters.
    """
    from jaxnn import data

    started = time.perf_counter()
    experiment = build(config)  # every config error surfaces here, before any I/O
    ds = experiment.dataset
    (x_train, y_train), (x_test, y_test) = data.load_splits(
        ds["name"], (ds.get("train_split", "train"), ds.get("test_split", "test")), data_dir=ds.get("data_dir"),
        **data.dataset_options(ds))

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
    plot_history(history, os.path.join(workdir, "curves.png"))
    write_atomic(os.path.join(workdir, "history.json"), history.to_json())
    return _write_results(config, workdir, results, print_fn)
