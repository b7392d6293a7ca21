"""Rosenblatt's perceptron on a logic gate, and a perceptron against an MLP on XOR."""
from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np

from jaxnn.config import build_loss, build_model, build_optimizer
from jaxnn.data import toy
from jaxnn.tasks import perceptron_rule as perceptron
from jaxnn.tasks.common import TASKS, FitClock, check_sections, config_section, required_section
from jaxnn.training.trainer import Trainer
from jaxnn.validation import positive_int, positive_number, require


_PERCEPTRON_FIELDS = {"epochs": 20, "learning_rate": 1.0, "shuffle": True}
_GATE_FIELDS = {"name": "and", "repeats": 1}


def _gate_data(config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    dataset = config_section(config, "dataset", _GATE_FIELDS)
    require("dataset.name", dataset["name"], dataset["name"] in toy.GATES, f"one of {', '.join(toy.GATES)}")
    return toy.logic_gate(dataset["name"], repeats=positive_int("dataset.repeats", dataset["repeats"]))


def _perceptron_options(config: ml_collections.ConfigDict, name: str) -> dict:
    options = config_section(config, name, _PERCEPTRON_FIELDS)
    positive_int(f"{name}.epochs", options["epochs"])
    positive_number(f"{name}.learning_rate", options["learning_rate"])
    require(f"{name}.shuffle", options["shuffle"], isinstance(options["shuffle"], bool), "True or False")
    return options


def _train_perceptron(x, y, options: dict, key, clock: FitClock) -> dict:
    """Fit from zero weights (timed by `clock`); accuracy on (x, y), mistakes per epoch, first epoch without one
    (or None)."""
    with clock:
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


@TASKS.register("perceptron")
def perceptron_task(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> tuple[dict, None]:
    """Rosenblatt's rule on a logic gate (`dataset.name`): accuracy on its truth table, mistakes per epoch.

    Sections: `dataset` (name: and/or/xor, repeats), `train` (epochs,
    learning_rate, shuffle: a fresh example order each epoch from `seed`).
    """
    started = time.perf_counter()
    seed = check_sections(config, ("task", "seed", "dataset", "train"))
    x, y = _gate_data(config)
    options = _perceptron_options(config, "train")
    clock = FitClock()
    results = _train_perceptron(x, y, options, jax.random.key(seed), clock)
    results.update(wall_seconds=round(time.perf_counter() - started, 4), train_seconds=round(clock.seconds, 4))
    return results, None


@TASKS.register("perceptron_vs_mlp")
def perceptron_vs_mlp(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> tuple[dict, None]:
    """A single perceptron and an MLP trained by the Trainer on the same gate; both accuracies.

    Sections: `dataset` (name, repeats), `perceptron` (as the perceptron task's
    `train`), then as a classification config: `model` (one sigmoid output:
    `num_classes` is 1), `loss`, `optimizer`, `train` (epochs, batch_size, shuffle).
    """
    started = time.perf_counter()
    seed = check_sections(config, ("task", "seed", "dataset", "perceptron", "model", "loss", "optimizer", "train"))
    x, y = _gate_data(config)
    options = _perceptron_options(config, "perceptron")
    train = config_section(config, "train", {"epochs": None, "batch_size": None, "shuffle": True})
    positive_int("train.epochs", train["epochs"])
    batch_size = positive_int("train.batch_size", train["batch_size"])
    require("train.batch_size", batch_size, batch_size <= len(y), f"at most the {len(y)} examples")
    total_steps = train["epochs"] * (len(y) // batch_size)
    trainer = Trainer(build_model(required_section(config, "model"), 1), loss=build_loss(required_section(config, "loss")),
                      optimizer=build_optimizer(required_section(config, "optimizer"), total_steps), metrics=("accuracy",))
    trainer.check_data(jax.eval_shape(lambda: trainer.init(0, x.shape[1:])), x, y)

    perceptron_key, mlp_key = jax.random.split(jax.random.key(seed))
    clock = FitClock()
    single = _train_perceptron(x, y, options, perceptron_key, clock)
    state = trainer.init(mlp_key, x.shape[1:])
    with clock:
        state, history = trainer.fit(state, x, y, epochs=train["epochs"], batch_size=train["batch_size"],
                                     shuffle=train["shuffle"], verbose=0)
    mlp = trainer.evaluate(state, x, y, batch_size=len(y))
    results = {
        "perceptron_accuracy": single["accuracy"],
        "mlp_accuracy": mlp["accuracy"],
        "mlp_loss": mlp["loss"],
        "perceptron_predictions": single["predictions"],
        "mlp_predictions": [int(p) for p in trainer.predict_classes(state, toy.INPUTS)],
        "perceptron_mistakes_per_epoch": single["mistakes_per_epoch"],
        "mlp_loss_per_epoch": history.history["loss"],
        "wall_seconds": round(time.perf_counter() - started, 4),
        "train_seconds": round(clock.seconds, 4),
    }
    return results, None
