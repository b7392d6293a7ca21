"""From an `ml_collections.ConfigDict` to a model, a Trainer and a dataset, validated up front.

A config has the sections `dataset`, `model`, `loss`, `optimizer`, `train`,
`eval` and `checkpoint` (see configs/fashion_mnist_mlp.py). Every name and
number is checked here, before any data is loaded or any file written, and a
bad one stops with one line naming the field, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from jaxnn import losses, metrics as metrics_lib, optimizers
from jaxnn.layers import Dense, Dropout, Flatten, Layer, from_spec
from jaxnn.models import Sequential
from jaxnn.registry import Registry
from jaxnn.training.trainer import Trainer

MODELS: Registry = Registry("model")
SECTIONS = ("seed", "dataset", "model", "loss", "optimizer", "train", "eval", "checkpoint")


@MODELS.register("mlp")
def mlp(num_classes: int, hidden_units=(512, 256), activation: str = "relu", dropout: float = 0.0,
        output_activation: str = "softmax") -> Sequential:
    """Flatten -> [Dense(units, activation) -> Dropout] per hidden layer -> Dense(num_classes)."""
    layers: list[Layer] = [Flatten()]
    for units in hidden_units:
        layers.append(Dense(int(units), activation))
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(Dense(num_classes, output_activation))
    return Sequential(layers)


@MODELS.register("sequential")
def sequential(num_classes: int, layers=()) -> Sequential:
    """A Sequential from layer specs such as `{"type": "Dense", "units": 10, "activation": "softmax"}`."""
    del num_classes  # the specs say everything, the output layer included
    return Sequential([from_spec(dict(spec)) for spec in layers])


def _plain(section) -> dict:
    return section.to_dict() if isinstance(section, ml_collections.ConfigDict) else dict(section)


def _call_checked(fn: Callable, field: str, options: dict, fixed: dict | None = None):
    """Call `fn(**options, **fixed)`, rejecting unknown options with the allowed ones listed."""
    allowed = [p for p in inspect.signature(fn).parameters if p not in (fixed or {})]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown field {field}.{unknown[0]}; allowed: {', '.join(allowed)}")
    return fn(**options, **(fixed or {}))


def _positive_int(field: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field} must be a positive integer, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything a run needs, built and checked from a config."""

    trainer: Trainer
    dataset: dict
    train: dict
    eval: dict
    checkpoint: dict
    seed: int

    @property
    def model(self) -> Layer:
        return self.trainer.model


def build_model(model_cfg: dict, num_classes: int) -> Layer:
    """The model named by `model_cfg["name"]` with the remaining fields as options."""
    options = dict(model_cfg)
    builder = MODELS.get(options.pop("name", None) or "")
    return _call_checked(builder, "model", options, {"num_classes": num_classes})


def build_loss(loss_cfg: dict) -> Callable:
    options = dict(loss_cfg)
    name = options.pop("name", None) or ""
    fn = losses.LOSSES.get(name)
    allowed = [p for p in list(inspect.signature(fn).parameters)[2:]]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown field loss.{unknown[0]} for loss {name!r}; allowed: {', '.join(allowed) or 'none'}")
    return losses.get(name, **options)


def build_optimizer(opt_cfg: dict):
    options = dict(opt_cfg)
    name = options.pop("name", None) or ""
    optimizers.OPTIMIZERS.get(name)
    return optimizers.get(name, **options)


def build(config: ml_collections.ConfigDict) -> Experiment:
    """Validate `config` and build the experiment; raises ValueError naming the bad field."""
    from jaxnn import data

    unknown = sorted(set(config.keys()) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown config section {unknown[0]!r}; allowed: {', '.join(SECTIONS)}")
    dataset = _plain(config.dataset)
    if dataset.get("name") not in data.SUPPORTED:
        raise ValueError(f"dataset.name must be one of {', '.join(data.SUPPORTED)}, got {dataset.get('name')!r}")
    info = data.dataset_info(dataset["name"])
    train = _plain(config.train)
    _positive_int("train.epochs", train.get("epochs"))
    _positive_int("train.batch_size", train.get("batch_size"))
    split = train.get("validation_split", 0.0)
    if not isinstance(split, (int, float)) or not 0.0 <= split < 1.0:
        raise ValueError(f"train.validation_split must be in [0, 1), got {split!r}")
    eval_cfg = _plain(config.eval)
    _positive_int("eval.batch_size", eval_cfg.get("batch_size"))
    metric_names = tuple(train.get("metrics", ("accuracy",)))
    for name in metric_names:
        metrics_lib.get(name)
    model = build_model(_plain(config.model), info.num_classes)
    trainer = Trainer(model, loss=build_loss(_plain(config.loss)), optimizer=build_optimizer(_plain(config.optimizer)),
                      metrics=metric_names)
    # Shapes are known now: a model that does not fit the data fails before any data is read.
    abstract_state = jax.eval_shape(lambda: trainer.init(0, info.input_shape))
    trainer.check_data(abstract_state, np.zeros((1, *info.input_shape), np.float32), np.zeros((1,), np.int32))
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return Experiment(trainer=trainer, dataset=dataset, train=train, eval=eval_cfg,
                      checkpoint=_plain(config.checkpoint), seed=seed)

