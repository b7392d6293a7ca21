"""Experiments other than `run`'s image classification, picked by a config's `task` field.

    python train.py --config configs/perceptron_and.py --workdir runs/and     # task = "perceptron"
    python train.py --config configs/xor_mlp.py --workdir runs/xor            # task = "perceptron_vs_mlp"
    python train.py --config configs/fashion_mnist_transfer.py --workdir runs/transfer   # task = "transfer"
    python train.py --config configs/fashion_mnist_gan.py --workdir runs/gan             # task = "gan"

A task is `fn(config, workdir, *, print_fn=print) -> results dict`. Like `run`,
each one checks its whole config before it reads data or writes a file, a bad
field stopping it with one line naming the field, the value and what is
allowed; at the end it writes `results.json` and `config.json` into the workdir.
"""
from __future__ import annotations

import dataclasses
import json
import numbers
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxnn import perceptron
from jaxnn.checkpoint import save_tree
from jaxnn.config import build_loss, build_model, build_optimizer
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


_TRANSFER_SECTIONS = ("task", "seed", "dataset", "model", "pretrain", "transfer", "eval")
_TRANSFER_DATASET = {"name": "fashion_mnist", "data_dir": None, "train_split": "train", "test_split": "test",
                     "base_classes": (0, 1, 2, 3, 4), "target_classes": (5, 6, 7, 8, 9),
                     "base_examples": 0, "target_examples": 500}
_PRETRAIN_FIELDS = {"epochs": None, "batch_size": 128, "optimizer": None}
_TRANSFER_FIELDS = {"freeze": None, "head_epochs": None, "fine_tune_epochs": None, "batch_size": 32,
                    "optimizer": None, "fine_tune_optimizer": None}
_LOSS = "sparse_categorical_crossentropy"


def _non_negative_int(field: str, value) -> int:
    _require(field, value, isinstance(value, int) and not isinstance(value, bool) and value >= 0,
             "a non-negative integer")
    return value


def _image_dataset(dataset: dict):
    """The `DatasetSpec` of `dataset.name`, which must be an image dataset."""
    from jaxnn import data
    from jaxnn.data.specs import IMAGE_DATASETS

    _require("dataset.name", dataset["name"], dataset["name"] in IMAGE_DATASETS, f"one of {', '.join(IMAGE_DATASETS)}")
    return data.dataset_info(dataset["name"])


def _classes(field: str, value, num_classes: int) -> tuple[int, ...]:
    ok = (isinstance(value, (list, tuple)) and len(value) >= 2 and len(set(value)) == len(value)
          and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < num_classes for c in value))
    _require(field, value, ok, f"at least 2 distinct class ids in [0, {num_classes})")
    return tuple(value)


def _optimizer_section(field: str, value) -> dict:
    _require(field, value, isinstance(value, (dict, ml_collections.ConfigDict)) and "name" in value,
             "an optimizer section such as {'name': 'adam', 'learning_rate': 1e-3}")
    return dict(value)


def _phase_optimizer(field: str, options: dict, total_steps: int = 2**31 - 1):
    try:
        return build_optimizer(options, total_steps)
    except ValueError as e:
        raise ValueError(f"{field}: {e}") from None


def transfer_models(layer_specs, image_shape, num_base_classes: int, num_target_classes: int):
    """The base classifier and the transfer model, two functional `Model`s sharing the `layer_specs` layers.

    base: image -> layers -> Dense(num_base_classes, softmax, name="head").
    transfer: the same layer objects (so the same names, e.g. `conv2d`,
    `features`) up to the last of `layer_specs`, then a new
    Dense(num_target_classes, softmax, name="new_head").
    """
    from jaxnn import Dense, Input, Model
    from jaxnn.layers import from_spec

    image = Input(shape=tuple(image_shape), name="image")
    features = image
    for spec in layer_specs:
        features = from_spec(dict(spec))(features)
    base = Model(image, Dense(num_base_classes, "softmax", name="head")(features), name="base")
    last = base.named_layers()[-2][0]  # the layer before the head
    head = Dense(num_target_classes, "softmax", name="new_head")
    return base, Model(base.inputs, head(base.output_of(last)), name="transfer")


def _transfer_plan(config: ml_collections.ConfigDict) -> dict:
    """Every field of a transfer config checked, the models built and the freeze patterns tried on their params."""
    from jaxnn import transfer
    from jaxnn.layers.base import abstract_init

    seed = _check_sections(config, _TRANSFER_SECTIONS)
    dataset = _section(config, "dataset", _TRANSFER_DATASET)
    info = _image_dataset(dataset)
    base_classes = _classes("dataset.base_classes", dataset["base_classes"], info.num_classes)
    target_classes = _classes("dataset.target_classes", dataset["target_classes"], info.num_classes)
    _require("dataset.target_classes", target_classes, not set(base_classes) & set(target_classes),
             f"classes not among dataset.base_classes {base_classes}")
    _non_negative_int("dataset.base_examples", dataset["base_examples"])
    _positive_int("dataset.target_examples", dataset["target_examples"])
    model = _section(config, "model", {"layers": ()})
    _require("model.layers", model["layers"], isinstance(model["layers"], (list, tuple)) and len(model["layers"]) > 0,
             "a non-empty list of layer specs")
    base, new = transfer_models(model["layers"], info.input_shape, len(base_classes), len(target_classes))
    pretrain = _section(config, "pretrain", _PRETRAIN_FIELDS)
    phases = _section(config, "transfer", _TRANSFER_FIELDS)
    for field, section in (("pretrain.epochs", pretrain), ("pretrain.batch_size", pretrain),
                           ("transfer.head_epochs", phases), ("transfer.fine_tune_epochs", phases),
                           ("transfer.batch_size", phases)):
        _positive_int(field, section[field.split(".")[1]])
    _phase_optimizer("pretrain.optimizer", _optimizer_section("pretrain.optimizer", pretrain["optimizer"]))
    _phase_optimizer("transfer.optimizer", _optimizer_section("transfer.optimizer", phases["optimizer"]))
    fine_tune = _optimizer_section("transfer.fine_tune_optimizer", phases["fine_tune_optimizer"])
    _, new_params, _ = abstract_init(new, (None, *info.input_shape))
    try:
        transfer.fine_tune_optimizer(new_params, **{"optimizer": fine_tune.pop("name"), **fine_tune})
    except (ValueError, TypeError) as e:
        raise ValueError(f"transfer.fine_tune_optimizer: {e}") from None
    patterns = phases["freeze"]
    _require("transfer.freeze", patterns, isinstance(patterns, (list, tuple)) and len(patterns) > 0
             and all(isinstance(p, str) for p in patterns), "a non-empty list of layer names or patterns")
    try:
        labels = transfer.param_paths(transfer.frozen_labels(new_params, patterns))
    except ValueError as e:
        raise ValueError(f"transfer.freeze: {e}") from None
    _require("transfer.freeze", patterns, "trainable" in labels.values(), "patterns that leave the new head trainable")
    eval_cfg = _section(config, "eval", {"batch_size": 1000})
    _positive_int("eval.batch_size", eval_cfg["batch_size"])
    return {"seed": seed, "dataset": dataset, "base_classes": base_classes, "target_classes": target_classes,
            "base": base, "new": new, "new_params": new_params, "pretrain": pretrain, "phases": phases,
            "eval_batch_size": eval_cfg["batch_size"]}


def _class_subset(x, y, classes, limit: int, key) -> tuple[np.ndarray, np.ndarray]:
    """The examples of `classes` (a random `limit` of them, 0: all) with labels renumbered 0..len(classes)-1."""
    keep = np.flatnonzero(np.isin(y, classes))
    if limit:
        _require("the number of examples asked for", limit, limit <= len(keep),
                 f"at most the {len(keep)} examples of classes {tuple(classes)}")
        keep = np.sort(np.asarray(jax.random.permutation(key, keep))[:limit])
    lookup = np.full(int(np.max(y)) + 1, -1, np.int32)
    lookup[list(classes)] = np.arange(len(classes))
    return x[keep], lookup[y[keep]]


@TASKS.register("transfer")
def transfer_task(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> dict:
    """Pretrain on `dataset.base_classes`, transfer to `dataset.target_classes` from a few labelled images.

    1. pretrain the base classifier on the base classes; save its params;
    2. load them by layer name into the transfer model (new head), freeze
       `transfer.freeze`, train the head (`head_epochs`); the frozen params are
       checked to be bit-identical afterwards (freezing is of params: BatchNorm
       moving statistics in frozen layers still follow the new data);
    3. unfreeze everything and fine-tune at `fine_tune_optimizer`'s lower rate;
    4. train the same transfer model from scratch on the same images for the
       same number of epochs (head + fine-tune) with `transfer.optimizer`.
    Test accuracy on the target classes' test images: `transfer_test_accuracy`
    vs `scratch_test_accuracy` in results.json; each phase's History in
    history.json; params in checkpoints/base, checkpoints/transfer, checkpoints/scratch.
    """
    from jaxnn import data, transfer

    started = time.perf_counter()
    plan = _transfer_plan(config)  # every config error surfaces here, before any I/O
    dataset, pretrain, phases = plan["dataset"], plan["pretrain"], plan["phases"]
    base_key, target_key, pre_key, new_key, scratch_key = jax.random.split(jax.random.key(plan["seed"]), 5)
    (x_train, y_train), (x_test, y_test) = (
        data.load_arrays(dataset["name"], dataset[split], data_dir=dataset["data_dir"])
        for split in ("train_split", "test_split"))
    xb, yb = _class_subset(x_train, y_train, plan["base_classes"], dataset["base_examples"], base_key)
    xt, yt = _class_subset(x_train, y_train, plan["target_classes"], dataset["target_examples"], target_key)
    xb_test, yb_test = _class_subset(x_test, y_test, plan["base_classes"], 0, None)
    xt_test, yt_test = _class_subset(x_test, y_test, plan["target_classes"], 0, None)
    for field, section, n in (("pretrain.batch_size", pretrain, len(yb)), ("transfer.batch_size", phases, len(yt))):
        _require(field, section["batch_size"], section["batch_size"] <= n, f"at most the {n} training examples")
    shape, eval_bs, verbose = x_train.shape[1:], plan["eval_batch_size"], int(print_fn is not None)
    fit = lambda trainer, state, x, y, epochs, batch_size: trainer.fit(
        state, x, y, epochs=epochs, batch_size=batch_size, verbose=verbose)
    new_trainer = lambda tx: Trainer(plan["new"], loss=_LOSS, optimizer=tx, metrics=("accuracy",))
    histories, seconds = {}, {}

    tick = time.perf_counter()
    base_trainer = Trainer(plan["base"], loss=_LOSS, metrics=("accuracy",), optimizer=_phase_optimizer(
        "pretrain.optimizer", pretrain["optimizer"], pretrain["epochs"] * (len(yb) // pretrain["batch_size"])))
    state = base_trainer.init(pre_key, shape)
    if print_fn is not None:
        summary(plan["base"], shape, params=state.params, state=state.model_state, print_fn=print_fn)
    state, histories["pretrain"] = fit(base_trainer, state, xb, yb, pretrain["epochs"], pretrain["batch_size"])
    base_test = base_trainer.evaluate(state, xb_test, yb_test, batch_size=eval_bs)
    base_path = transfer.save_params(os.path.join(workdir, "checkpoints", "base"),
                                     {"params": state.params, "model_state": state.model_state})
    seconds["pretrain"] = time.perf_counter() - tick

    tick = time.perf_counter()
    saved = transfer.load_params(base_path)
    head_steps = phases["head_epochs"] * (len(yt) // phases["batch_size"])
    head_tx = transfer.freeze(_phase_optimizer("transfer.optimizer", phases["optimizer"], head_steps),
                              plan["new_params"], phases["freeze"])
    head_trainer = new_trainer(head_tx)
    state = head_trainer.init(new_key, shape)
    params = transfer.load_by_name(state.params, saved["params"])  # every layer name the two have in common
    model_state = (transfer.load_by_name(state.model_state, saved["model_state"])
                   if state.model_state and saved.get("model_state") else state.model_state)
    state = state.replace(params=params, model_state=model_state, opt_state=head_tx.init(params))
    labels = transfer.param_paths(transfer.frozen_labels(params, phases["freeze"]))
    frozen = {path: np.array(leaf, copy=True) for path, leaf in transfer.param_paths(params).items()
              if labels[path] == "frozen"}  # host copies: the train step donates the arrays
    state, histories["head"] = fit(head_trainer, state, xt, yt, phases["head_epochs"], phases["batch_size"])
    after = transfer.param_paths(state.params)
    changed = [path for path, leaf in frozen.items() if not np.array_equal(np.asarray(after[path]), leaf)]
    if changed:
        raise RuntimeError(f"frozen parameters changed while training the head: {', '.join(changed)}")
    head_test = head_trainer.evaluate(state, xt_test, yt_test, batch_size=eval_bs)

    fine_tune = dict(phases["fine_tune_optimizer"])
    tune_tx = transfer.fine_tune_optimizer(state.params, optimizer=fine_tune.pop("name"), **fine_tune)
    tune_trainer = new_trainer(tune_tx)
    state = state.replace(opt_state=tune_tx.init(state.params))
    state, histories["fine_tune"] = fit(tune_trainer, state, xt, yt, phases["fine_tune_epochs"], phases["batch_size"])
    transfer_test = tune_trainer.evaluate(state, xt_test, yt_test, batch_size=eval_bs)
    transfer.save_params(os.path.join(workdir, "checkpoints", "transfer"),
                         {"params": state.params, "model_state": state.model_state})
    seconds["transfer"] = time.perf_counter() - tick

    tick = time.perf_counter()
    epochs = phases["head_epochs"] + phases["fine_tune_epochs"]
    scratch_trainer = new_trainer(_phase_optimizer("transfer.optimizer", phases["optimizer"],
                                                   epochs * (len(yt) // phases["batch_size"])))
    state, histories["scratch"] = fit(scratch_trainer, scratch_trainer.init(scratch_key, shape), xt, yt, epochs,
                                      phases["batch_size"])
    scratch_test = scratch_trainer.evaluate(state, xt_test, yt_test, batch_size=eval_bs)
    transfer.save_params(os.path.join(workdir, "checkpoints", "scratch"),
                         {"params": state.params, "model_state": state.model_state})
    seconds["scratch"] = time.perf_counter() - tick

    results = {
        "transfer_test_accuracy": transfer_test["accuracy"],
        "scratch_test_accuracy": scratch_test["accuracy"],
        "margin": transfer_test["accuracy"] - scratch_test["accuracy"],
        "head_only_test_accuracy": head_test["accuracy"],
        "base_test_accuracy": base_test["accuracy"],
        "frozen_params_unchanged": True,
        "frozen_params": sorted(frozen),
        "loaded_layers": sorted(set(params) & set(saved["params"])),
        "base_train_examples": int(len(yb)),
        "target_train_examples": int(len(yt)),
        "target_test_examples": int(len(yt_test)),
        "phase_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    write_atomic(os.path.join(workdir, "history.json"),
                 json.dumps({phase: h.history for phase, h in histories.items()}, indent=2))
    return _write_results(config, workdir, results, print_fn)


_GAN_SECTIONS = ("task", "seed", "dataset", "model", "optimizer", "train", "samples")
_GAN_DATASET = {"name": "fashion_mnist", "data_dir": None, "train_split": "train"}


@dataclasses.dataclass(frozen=True)
class GANExperiment:
    """A checked GAN config: the `GAN`, the dataset and train fields, the sample grid, the seed."""

    gan: Any
    image_shape: tuple
    dataset: dict
    train: dict
    samples: dict
    seed: int


def build_gan(config: ml_collections.ConfigDict) -> GANExperiment:
    """Check a GAN config (sections: `_GAN_SECTIONS`) and build its `GAN`; a bad field raises one ValueError line."""
    from jaxnn.gan import GAN

    seed = _check_sections(config, _GAN_SECTIONS)
    dataset = _section(config, "dataset", _GAN_DATASET)
    info = _image_dataset(dataset)
    model = _section(config, "model", {"latent_dim": 100, "generator": None, "discriminator": None})
    _positive_int("model.latent_dim", model["latent_dim"])
    players, optimizers = {}, _section(config, "optimizer", {"generator": None, "discriminator": None})
    for side in ("generator", "discriminator"):
        spec = model[side]
        _require(f"model.{side}", spec, isinstance(spec, (dict, ml_collections.ConfigDict)),
                 "a model section such as {'name': 'sequential', 'layers': [...]}")
        try:
            players[side] = build_model(dict(spec), 1)
        except ValueError as e:
            raise ValueError(f"model.{side}: {e}") from None
        options = _optimizer_section(f"optimizer.{side}", optimizers[side])
        players[f"{side}_optimizer"] = _phase_optimizer(f"optimizer.{side}", options)
    gan = GAN(latent_dim=model["latent_dim"], **players)
    try:
        gan.check_shapes(info.input_shape)
    except ValueError as e:
        raise ValueError(f"model: {e}") from None
    train = _section(config, "train", {"epochs": None, "batch_size": 64, "max_examples": 0})
    _positive_int("train.epochs", train["epochs"])
    _positive_int("train.batch_size", train["batch_size"])
    _non_negative_int("train.max_examples", train["max_examples"])
    samples = _section(config, "samples", {"rows": 10, "cols": 10})
    _positive_int("samples.rows", samples["rows"])
    _positive_int("samples.cols", samples["cols"])
    return GANExperiment(gan, tuple(info.input_shape), dataset, train, samples, seed)


def load_gan(workdir: str) -> tuple[GANExperiment, dict]:
    """The experiment of a finished GAN run and its final generator (`params`, `model_state`), from `workdir`."""
    from jaxnn.checkpoint import load_tree

    with open(os.path.join(workdir, "config.json")) as f:
        experiment = build_gan(ml_collections.ConfigDict(json.load(f)))
    like = jax.eval_shape(lambda: experiment.gan.init(jax.random.key(0), experiment.image_shape))
    players = {side: {"params": getattr(like, side).params, "model_state": getattr(like, side).model_state}
               for side in ("generator", "discriminator")}
    return experiment, load_tree(os.path.join(workdir, "checkpoints", "final"), like=players)["generator"]


@TASKS.register("gan")
def gan_task(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> dict:
    """Train a GAN on the training images (scaled to [-1, 1]); a sample grid per epoch, both losses per epoch.

    Writes samples/epoch_XXX.png (the same `samples.rows` x `samples.cols`
    latent vectors every epoch, so epochs compare), history.json (`d_loss`,
    `g_loss`, `d_real` = mean D(x), `d_fake` = mean D(G(z))), curves.png,
    checkpoints/final (generator and discriminator params and state),
    results.json and config.json.
    """
    from jaxnn import data
    from jaxnn.gan import save_image_grid

    started = time.perf_counter()
    experiment = build_gan(config)  # every config error surfaces here, before any I/O
    gan, train, samples, dataset = experiment.gan, experiment.train, experiment.samples, experiment.dataset
    images, _ = data.load_arrays(dataset["name"], dataset["train_split"], data_dir=dataset["data_dir"])
    if train["max_examples"]:
        images = images[:train["max_examples"]]
    _require("train.batch_size", train["batch_size"], train["batch_size"] <= len(images),
             f"at most the {len(images)} training images")
    init_key, sample_key = jax.random.split(jax.random.key(experiment.seed))
    state = gan.init(init_key, experiment.image_shape)
    if print_fn is not None:
        for side in ("generator", "discriminator"):
            player, shape = getattr(state, side), (gan.latent_dim,) if side == "generator" else experiment.image_shape
            summary(getattr(gan, side), shape, params=player.params, state=player.model_state, print_fn=print_fn)
    fixed_latents = gan.latent(sample_key, samples["rows"] * samples["cols"])
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    epoch_seconds, tick = [], [time.perf_counter()]

    def on_epoch_end(epoch, state, logs):
        epoch_seconds.append(time.perf_counter() - tick[0])
        save_image_grid(gan.generate(state.generator, fixed_latents),
                        os.path.join(workdir, "samples", f"epoch_{epoch + 1:03d}.png"), samples["cols"])
        if print_fn is not None:
            print_fn(f"Epoch {epoch + 1}/{train['epochs']} - {epoch_seconds[-1]:.1f}s - "
                     + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        tick[0] = time.perf_counter()

    state, history = gan.fit(state, images * 2.0 - 1.0, epochs=train["epochs"], batch_size=train["batch_size"],
                             on_epoch_end=on_epoch_end)
    save_tree(os.path.join(workdir, "checkpoints", "final"),
              {side: {"params": getattr(state, side).params, "model_state": getattr(state, side).model_state}
               for side in ("generator", "discriminator")})
    plot_history(history, os.path.join(workdir, "curves.png"))
    write_atomic(os.path.join(workdir, "history.json"), history.to_json())
    results = {**{k: v[-1] for k, v in history.history.items()}, "epochs": train["epochs"],
               "train_examples": int(len(images)), "median_epoch_seconds": round(float(np.median(epoch_seconds)), 2),
               "wall_seconds": round(time.perf_counter() - started, 2)}
    return _write_results(config, workdir, results, print_fn)
