"""Transfer learning: pretrain on some classes, reuse the base by layer names for the others, against
the same model trained from scratch."""
from __future__ import annotations

import os
import time

import jax
import ml_collections
import numpy as np

from jaxnn.models import Model
from jaxnn.layers import Dense, Input, from_spec
from jaxnn.layers.shapes import abstract_init
from jaxnn.models import summary
from jaxnn.tasks import transfer_weights as transfer
from jaxnn.tasks.common import (TASKS, FitClock, check_sections, config_section, image_dataset, optimizer_section,
                                 phase_optimizer)
from jaxnn.training.history import History
from jaxnn.training.trainer import Trainer
from jaxnn.validation import is_int, non_negative_int, positive_int, require


_TRANSFER_SECTIONS = ("task", "seed", "dataset", "model", "pretrain", "transfer", "eval")
_TRANSFER_DATASET = {"name": "fashion_mnist", "data_dir": None, "train_split": "train", "test_split": "test",
                     "base_classes": (0, 1, 2, 3, 4), "target_classes": (5, 6, 7, 8, 9),
                     "base_examples": 0, "target_examples": 500}
_PRETRAIN_FIELDS = {"epochs": None, "batch_size": 128, "optimizer": None}
_TRANSFER_FIELDS = {"freeze": None, "head_epochs": None, "fine_tune_epochs": None, "batch_size": 32,
                    "optimizer": None, "fine_tune_optimizer": None}
_LOSS = "sparse_categorical_crossentropy"


def _classes(field: str, value, num_classes: int) -> tuple[int, ...]:
    ok = (isinstance(value, (list, tuple)) and len(value) >= 2 and len(set(value)) == len(value)
          and all(is_int(c) and 0 <= c < num_classes for c in value))
    require(field, value, ok, f"at least 2 distinct class ids in [0, {num_classes})")
    return tuple(value)


def transfer_models(layer_specs, image_shape, num_base_classes: int, num_target_classes: int):
    """The base classifier and the transfer model, two functional `Model`s sharing the `layer_specs` layers.

    base: image -> layers -> Dense(num_base_classes, softmax, name="head").
    transfer: the same layer objects (so the same names, e.g. `conv2d`,
    `features`) up to the last of `layer_specs`, then a new
    Dense(num_target_classes, softmax, name="new_head").
    """
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
    seed = check_sections(config, _TRANSFER_SECTIONS)
    dataset = config_section(config, "dataset", _TRANSFER_DATASET)
    info = image_dataset(dataset)
    base_classes = _classes("dataset.base_classes", dataset["base_classes"], info.num_classes)
    target_classes = _classes("dataset.target_classes", dataset["target_classes"], info.num_classes)
    require("dataset.target_classes", target_classes, not set(base_classes) & set(target_classes),
             f"classes not among dataset.base_classes {base_classes}")
    non_negative_int("dataset.base_examples", dataset["base_examples"])
    positive_int("dataset.target_examples", dataset["target_examples"])
    model = config_section(config, "model", {"layers": ()})
    require("model.layers", model["layers"], isinstance(model["layers"], (list, tuple)) and len(model["layers"]) > 0,
             "a non-empty list of layer specs")
    base, new = transfer_models(model["layers"], info.input_shape, len(base_classes), len(target_classes))
    pretrain = config_section(config, "pretrain", _PRETRAIN_FIELDS)
    phases = config_section(config, "transfer", _TRANSFER_FIELDS)
    for field, section in (("pretrain.epochs", pretrain), ("pretrain.batch_size", pretrain),
                           ("transfer.head_epochs", phases), ("transfer.fine_tune_epochs", phases),
                           ("transfer.batch_size", phases)):
        positive_int(field, section[field.split(".")[1]])
    phase_optimizer("pretrain.optimizer", optimizer_section("pretrain.optimizer", pretrain["optimizer"]))
    phase_optimizer("transfer.optimizer", optimizer_section("transfer.optimizer", phases["optimizer"]))
    fine_tune = optimizer_section("transfer.fine_tune_optimizer", phases["fine_tune_optimizer"])
    _, new_params, _ = abstract_init(new, (None, *info.input_shape))
    try:
        transfer.fine_tune_optimizer(new_params, **{"optimizer": fine_tune.pop("name"), **fine_tune})
    except (ValueError, TypeError) as e:
        raise ValueError(f"transfer.fine_tune_optimizer: {e}") from None
    patterns = phases["freeze"]
    require("transfer.freeze", patterns, isinstance(patterns, (list, tuple)) and len(patterns) > 0
             and all(isinstance(p, str) for p in patterns), "a non-empty list of layer names or patterns")
    try:
        labels = transfer.param_paths(transfer.frozen_labels(new_params, patterns))
    except ValueError as e:
        raise ValueError(f"transfer.freeze: {e}") from None
    require("transfer.freeze", patterns, "trainable" in labels.values(), "patterns that leave the new head trainable")
    eval_cfg = config_section(config, "eval", {"batch_size": 1000})
    positive_int("eval.batch_size", eval_cfg["batch_size"])
    return {"seed": seed, "dataset": dataset, "base_classes": base_classes, "target_classes": target_classes,
            "base": base, "new": new, "new_params": new_params, "pretrain": pretrain, "phases": phases,
            "eval_batch_size": eval_cfg["batch_size"]}


def _class_subset(x, y, classes, limit: int, key) -> tuple[np.ndarray, np.ndarray]:
    """The examples of `classes` (a random `limit` of them, 0: all) with labels renumbered 0..len(classes)-1."""
    keep = np.flatnonzero(np.isin(y, classes))
    if limit:
        require("the number of examples asked for", limit, limit <= len(keep),
                 f"at most the {len(keep)} examples of classes {tuple(classes)}")
        keep = np.sort(np.asarray(jax.random.permutation(key, keep))[:limit])
    lookup = np.full(int(np.max(y)) + 1, -1, np.int32)
    lookup[list(classes)] = np.arange(len(classes))
    return x[keep], lookup[y[keep]]


@TASKS.register("transfer")
def transfer_task(config: ml_collections.ConfigDict, workdir: str, *,
                  print_fn=print) -> tuple[dict, dict[str, History]]:
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
    vs `scratch_test_accuracy` in the results, each phase's History beside
    them; params in checkpoints/base, checkpoints/transfer, checkpoints/scratch.
    """
    from jaxnn import data

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
        require(field, section["batch_size"], section["batch_size"] <= n, f"at most the {n} training examples")
    shape, eval_bs, verbose = x_train.shape[1:], plan["eval_batch_size"], int(print_fn is not None)
    clock = FitClock()

    def fit(trainer, state, x, y, epochs, batch_size):
        with clock:
            return trainer.fit(state, x, y, epochs=epochs, batch_size=batch_size, verbose=verbose)

    new_trainer = lambda tx: Trainer(plan["new"], loss=_LOSS, optimizer=tx, metrics=("accuracy",))
    histories, seconds = {}, {}

    tick = time.perf_counter()
    base_trainer = Trainer(plan["base"], loss=_LOSS, metrics=("accuracy",), optimizer=phase_optimizer(
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
    head_tx = transfer.freeze(phase_optimizer("transfer.optimizer", phases["optimizer"], head_steps),
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
    scratch_trainer = new_trainer(phase_optimizer("transfer.optimizer", phases["optimizer"],
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
        "wall_seconds": round(time.perf_counter() - started, 4),
        "train_seconds": round(clock.seconds, 4),
    }
    return results, histories
