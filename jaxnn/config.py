"""From an `ml_collections.ConfigDict` to the parts of a classification run, validated up front.

A config has the sections `dataset`, `model`, `loss`, `optimizer`, `train`,
`eval` and `checkpoint` (see configs/fashion_mnist_mlp.py), and optionally
`mesh` and `distributed` (many devices and hosts: docs/distributed.md), and `sweep` (seeds and
hyperparameters trained at once as the members of an ensemble: jaxnn/sweep.py). `build` returns the
parts (model, loss, optimizer factory, metrics, data spec, sections, seed); the
classify task binds them into a Trainer once the run's length is known. Every
name, number and shape is checked here, before any data is loaded or any file
written, and a bad one stops with one line naming the field, the value and what
is allowed.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from typing import Callable

import jax
import ml_collections
import optax

from jax.sharding import Mesh

from jaxnn import data, distributed, losses, metrics as metrics_lib, optimizers, sweep, validation
from jaxnn.layers import Dense, Dropout, Flatten, Layer, from_spec
from jaxnn.layers.shapes import abstract_init
from jaxnn.models import Sequential
from jaxnn.registry import Registry

MODELS: Registry = Registry("model")

# Optional fields of the train and checkpoint sections, with their defaults
# (a config may leave any of them out; fields not listed here are errors).
TRAIN_DEFAULTS = dict(
    validation_split=0.0, shuffle=True, metrics=("accuracy",),
    accumulate_steps=1,          # gradients of k micro-batches summed in one step
    precision="float32",         # or mixed_bfloat16, mixed_float16 (with loss scaling)
    check_finite=False,          # NaN/inf loss or gradient stops at that step, naming the parameter
    terminate_on_nan=True,       # stop when the running loss is NaN/inf (checked at each log)
    log_every_steps=50,          # steps between fetches of the running metrics
    steps_per_dispatch="auto",   # train steps per compiled call (a fused chunk); "auto": ~0.1 s a dispatch
    # Per-example gradients (training/per_example.py): DP-SGD clipping + noise, norm quantiles per epoch,
    # the privacy spent (epsilon at delta, 0: 1/examples) and the k largest-gradient examples listed after training.
    per_example=dict(clip_norm=0.0, noise_multiplier=0.0, quantiles=False, delta=0.0, list_largest=0,
                     list_by="norm"),  # rank the listed examples by gradient norm or by loss
    tensorboard=True, histogram_freq=1,
    early_stopping=dict(enabled=False, monitor="val_loss", patience=3, min_delta=0.0, mode="auto",
                        restore_best_weights=True),
    reduce_lr_on_plateau=dict(enabled=False, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4,
                              cooldown=0, min_lr=0.0),
)
CHECKPOINT_DEFAULTS = dict(
    save_final=True,
    every_steps=0,               # also checkpoint every N steps (0: at epoch ends only)
    keep=3,                      # the last K checkpoints are kept, plus the best by `monitor`
    monitor="val_loss",          # "" keeps no best; "loss" by default when train.validation_split is 0
)
# Where the run lives: mesh axis sizes (-1: all the devices left), regex rules on state paths
# (("dense_1/kernel", (None, "fsdp")), ...: the first match wins) and the FSDP size threshold.
MESH_DEFAULTS = dict(**distributed.MESH_DEFAULTS, rules=(), min_shard_bytes=distributed.MIN_SHARD_BYTES)
# Multi-process runs: jax.distributed's start-up and heartbeat timeouts, and the step watchdog (0: none).
DISTRIBUTED_DEFAULTS = dict(initialization_timeout_s=300.0, heartbeat_timeout_s=30.0, watchdog_s=600.0)
# Fields that do not change what is computed: a resumed run may differ in these (the mesh only rounds differently).
_NOT_FINGERPRINTED = {"eval": None, "checkpoint": None, "mesh": None, "distributed": None,
                      "train": ("log_every_steps", "steps_per_dispatch", "tensorboard", "histogram_freq"),
                      "dataset": ("data_dir", "in_memory", "max_in_memory_gb")}
# The run length the optimizer is checked for before the data (and so the real length) is known.
NOMINAL_STEPS = 2**31 - 1
# The seeds jax.random.key takes (a sweep's members use seed, seed + 1, ...).
SEEDS = (-2**63, 2**63 - 1)
SECTIONS = ("task", "seed", "dataset", "model", "loss", "optimizer", "train", "eval", "checkpoint", "mesh",
            "distributed", "sweep")
REQUIRED_SECTIONS = ("dataset", "model", "loss", "optimizer", "train")  # the others have defaults
EVAL_DEFAULTS = dict(batch_size=1000)


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


def section(config: ml_collections.ConfigDict, name: str, required: bool = True) -> dict:
    """`config.<name>` as a plain dict; a missing section (when `required`) or one that is not a dict raises."""
    if name not in config:
        if required:
            raise ValueError(f"config section {name!r} is missing; a config has the sections "
                             f"{', '.join(REQUIRED_SECTIONS)} (see configs/fashion_mnist_mlp.py)")
        return {}
    value = config[name]
    if not isinstance(value, (dict, ml_collections.ConfigDict)):
        raise ValueError(f"config section {name!r} must be a dict of fields, got {value!r}")
    return _plain(value)


def _call_checked(fn: Callable, field: str, options: dict, fixed: dict | None = None):
    """Call `fn(**options, **fixed)`, rejecting unknown options with the allowed ones listed."""
    allowed = [p for p in inspect.signature(fn).parameters if p not in (fixed or {})]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown field {field}.{unknown[0]}; allowed: {', '.join(allowed)}")
    return fn(**options, **(fixed or {}))


def with_defaults(section: str, values: dict, defaults: dict) -> dict:
    """`values` over `defaults` (nested dicts merged); a field not in `defaults` raises naming it."""
    out = dict(defaults)
    for key, value in values.items():
        if key not in defaults:
            raise ValueError(f"unknown field {section}.{key}; allowed: {', '.join(defaults)}")
        if isinstance(defaults[key], dict):
            value = with_defaults(f"{section}.{key}", _plain(value), defaults[key])
        out[key] = value
    return out


def fingerprint(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON, less the fields that do not change the numbers (eval, checkpointing, logging,
    a `sweep` section that sweeps nothing)."""
    plain = json.loads(config.to_json())
    given = plain.get("sweep")
    if isinstance(given, dict) and given.get("seeds", 1) == 1 and not any(v for k, v in given.items() if k != "seeds"):
        plain.pop("sweep")
    for section, fields in _NOT_FINGERPRINTED.items():
        if fields is None:
            plain.pop(section, None)
        elif isinstance(plain.get(section), dict):
            for field in fields:
                plain[section].pop(field, None)
    return plain


@dataclasses.dataclass(frozen=True)
class Experiment:
    """The checked parts of a classification run: what a Trainer is made of, the data spec and the sections."""

    model: Layer
    loss: Callable
    optimizer: Callable[[int], optax.GradientTransformation]  # total_steps -> the optimizer for a run that long
    metrics: tuple[str, ...]
    data_spec: data.DatasetSpec
    dataset: dict
    train: dict
    eval: dict
    checkpoint: dict
    seed: int
    mesh: Mesh
    sharding: dict  # Trainer's sharding_rules and min_shard_bytes
    distributed: dict
    members: tuple[dict, ...] = ()  # with a sweep: {"seed", "hyperparams"} per member (jaxnn.sweep)


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


def build_optimizer(opt_cfg: dict, total_steps: int = 1):
    """The optimizer section as an optax transformation; schedules that default to the whole run span `total_steps`."""
    options = dict(opt_cfg)
    name = options.pop("name", None) or ""
    schedule = options.pop("schedule", None)
    clipnorm = options.pop("global_clipnorm", None)
    optimizers.OPTIMIZERS.get(name)
    return optimizers.get(name, schedule_options=_plain(schedule) if schedule else None,
                          global_clipnorm=clipnorm, total_steps=total_steps, **options)


def distributed_options(config: ml_collections.ConfigDict) -> dict:
    """The `distributed` section over its defaults, checked (train.py reads it before any other JAX call)."""
    options = with_defaults("distributed", section(config, "distributed", required=False), DISTRIBUTED_DEFAULTS)
    for field in ("initialization_timeout_s", "heartbeat_timeout_s"):
        validation.positive_number(f"distributed.{field}", options[field])
    validation.require("distributed.watchdog_s", options["watchdog_s"],
                       validation.is_number(options["watchdog_s"]) and options["watchdog_s"] >= 0,
                       "a number of seconds >= 0 (0: no watchdog)")
    return options


def build_mesh(config: ml_collections.ConfigDict, train: dict, eval_cfg: dict) -> tuple[Mesh, dict]:
    """The mesh section as a Mesh on this run's devices and the Trainer's sharding options; the global
    batches (train and eval) must split over the data-parallel size."""
    options = with_defaults("mesh", section(config, "mesh", required=False), MESH_DEFAULTS)
    mesh = distributed.make_mesh({axis: options[axis] for axis in distributed.AXES})
    distributed.check_global_batch(mesh, train["batch_size"], "train.batch_size")
    distributed.check_global_batch(mesh, eval_cfg["batch_size"], "eval.batch_size")
    rules = options["rules"]
    rules = list(_plain(rules).items()) if hasattr(rules, "items") else list(rules)
    for rule in rules:
        validation.require("mesh.rules", rule, isinstance(rule, (tuple, list)) and len(rule) == 2
                           and isinstance(rule[0], str) and isinstance(rule[1], (tuple, list)),
                           "(path regex, partition spec) pairs, e.g. (('dense_1/kernel', (None, 'fsdp')),)")
    min_shard_bytes = validation.integer("mesh.min_shard_bytes", options["min_shard_bytes"], 0)
    return mesh, dict(sharding_rules=tuple((pattern, tuple(spec)) for pattern, spec in rules),
                      min_shard_bytes=min_shard_bytes)


def check_fit(model: Layer, loss_fn: Callable, spec: data.DatasetSpec):
    """The model on the spec's inputs and the loss on its targets, abstractly: a mismatch raises naming both.
    Returns the abstract parameters."""
    _, params, state = abstract_init(model, (None, *spec.input_shape))
    inputs = jax.ShapeDtypeStruct((1, *spec.input_shape), spec.input_dtype)
    outputs = jax.eval_shape(lambda p, s, x: model.apply(p, x, state=s)[0], params, state, inputs)
    targets = jax.ShapeDtypeStruct((1, *spec.target_shape), spec.target_dtype)
    try:
        jax.eval_shape(loss_fn, targets, outputs)
    except (ValueError, TypeError) as e:
        shapes = jax.tree_util.tree_map(lambda o: o.shape[1:], outputs)
        raise ValueError(f"targets of shape {spec.target_shape} (per example) do not fit the model's "
                         f"output {shapes} under this loss: {e}") from None
    units = outputs.shape[-1] if isinstance(outputs, jax.ShapeDtypeStruct) and outputs.ndim > 1 else None
    if units is not None and units != spec.num_classes and not (units == 1 and spec.num_classes == 2):
        raise ValueError(f"the model's output layer has {units} units but {spec.name} has {spec.num_classes} "
                         f"classes: give the last layer {spec.num_classes} units")
    return params


def log_keys(metric_names, validation_split: float) -> tuple[str, ...]:
    """The names a classification run logs per epoch: loss, metrics, their val_ twins when validating, lr."""
    keys = ("loss", *(metrics_lib.get(name).name for name in metric_names))
    return keys + (tuple(f"val_{k}" for k in keys) if validation_split else ()) + ("lr",)


def _check_monitors(train: dict, checkpoint: dict, metric_names) -> None:
    """Each monitor a callback watches must be a name the run logs."""
    keys = log_keys(metric_names, train["validation_split"])
    watched = [("checkpoint.monitor", checkpoint["monitor"])] if checkpoint["monitor"] else []
    watched += [(f"train.{name}.monitor", train[name]["monitor"]) for name in ("early_stopping", "reduce_lr_on_plateau")
                if train[name]["enabled"]]
    for field, monitor in watched:
        if monitor not in keys:
            hint = " (val_ names need train.validation_split > 0)" if monitor.startswith("val_") else ""
            raise ValueError(f"{field} {monitor!r} is never logged by this run{hint}; it logs: {', '.join(keys)}")


def build(config: ml_collections.ConfigDict) -> Experiment:
    """Validate `config` and build its parts; raises ValueError naming the bad field.

    The optimizer is a factory of the run's step count, known once the data is
    loaded (its schedules span the whole run); it is built here once, for a
    nominal long run, to check its fields.
    """
    unknown = sorted(set(config.keys()) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown config section {unknown[0]!r}; allowed: {', '.join(SECTIONS)}")
    dataset = section(config, "dataset")
    if dataset.get("name") not in data.SUPPORTED:
        raise ValueError(f"dataset.name must be one of {', '.join(data.SUPPORTED)}, got {dataset.get('name')!r}")
    info = data.dataset_info(dataset["name"], **data.dataset_options(dataset))  # shapes follow the encoding
    data.streams(dataset, info, 0)  # the feeding fields (in_memory, max_in_memory_gb)
    train = with_defaults("train", section(config, "train"), {"epochs": None, "batch_size": None, **TRAIN_DEFAULTS})
    validation.positive_int("train.epochs", train.get("epochs"))
    validation.positive_int("train.batch_size", train.get("batch_size"))
    split = train.get("validation_split", 0.0)
    if not isinstance(split, (int, float)) or not 0.0 <= split < 1.0:
        raise ValueError(f"train.validation_split must be in [0, 1), got {split!r}")
    eval_cfg = with_defaults("eval", section(config, "eval", required=False), EVAL_DEFAULTS)
    validation.positive_int("eval.batch_size", eval_cfg.get("batch_size"))
    options = distributed_options(config)
    mesh, sharding = build_mesh(config, train, eval_cfg)
    metric_names = tuple(train.get("metrics", ("accuracy",)))
    for name in metric_names:
        metrics_lib.get(name)
    _check_train_options(train)
    checkpoint = with_defaults("checkpoint", section(config, "checkpoint", required=False),
                               {**CHECKPOINT_DEFAULTS, "monitor": "val_loss" if split else "loss"})
    validation.non_negative_int("checkpoint.every_steps", checkpoint["every_steps"])
    validation.positive_int("checkpoint.keep", checkpoint["keep"])
    _check_monitors(train, checkpoint, metric_names)
    model = build_model(section(config, "model"), info.num_classes)
    optimizer_section = section(config, "optimizer")
    build_optimizer(optimizer_section, NOMINAL_STEPS)
    loss_fn = build_loss(section(config, "loss"))
    params = check_fit(model, loss_fn, info)  # a model that does not fit the data fails before any data is read
    _check_per_example(train["per_example"], model, info)
    distributed.state_shardings({"params": params}, mesh, sharding["sharding_rules"], sharding["min_shard_bytes"])
    sweep_cfg, members = sweep.sweep_options(config), ()
    seed = config.get("seed", 0)
    highest = SEEDS[1] - (sweep_cfg["seeds"] - 1)  # a sweep's members take seed, seed + 1, ...
    validation.require("seed", seed, validation.is_int(seed) and SEEDS[0] <= seed <= highest,
                       f"an integer in [{SEEDS[0]}, {highest}]")
    settable = ()  # the optimizer hyperparameters a callback or a sweep may set
    if train["reduce_lr_on_plateau"]["enabled"] or sweep.hyperparams(sweep_cfg):
        # A bare constant schedule is the plain rate: left out, the rate is settable (per member, by the callback).
        optimizer_section = optimizers.without_constant_schedule(optimizer_section)
        settable = optimizers.settable_hyperparams(jax.eval_shape(
            build_optimizer(optimizer_section, NOMINAL_STEPS).init, params))
    if train["reduce_lr_on_plateau"]["enabled"]:
        validation.require("train.reduce_lr_on_plateau.enabled", True, "learning_rate" in settable,
                           "False when the learning rate follows a schedule (optimizer.schedule "
                           f"{optimizer_section.get('schedule')!r}): the callback sets a constant rate")
    if sweep.is_sweep(sweep_cfg):
        validation.require("train.per_example.list_largest", train["per_example"]["list_largest"],
                           not train["per_example"]["list_largest"], "0 with a sweep (it lists one model's examples)")
        in_memory = dataset.get("in_memory", True)
        validation.require("dataset.in_memory", in_memory, in_memory is True,
                           "True with a sweep (an ensemble trains from arrays in memory, not a stream)")
        sweep.check_sweep(sweep_cfg, optimizer_section, functools.partial(build_optimizer, total_steps=NOMINAL_STEPS),
                          settable, mesh)
        members = tuple(sweep.members(sweep_cfg, seed))
    optimizer = functools.partial(build_optimizer, optimizer_section)
    return Experiment(model=model, loss=loss_fn, optimizer=optimizer, metrics=metric_names, data_spec=info,
                      dataset=dataset, train=train, eval=eval_cfg, checkpoint=checkpoint, seed=seed, mesh=mesh,
                      sharding=sharding, distributed=options, members=members)


def _check_train_options(train: dict) -> None:
    """The loop options of the train section: one line naming a bad field."""
    from jaxnn.training.dispatch import check_steps_per_dispatch
    from jaxnn.training.precision import POLICIES

    accumulate = validation.positive_int("train.accumulate_steps", train["accumulate_steps"])
    if train["batch_size"] % accumulate:
        raise ValueError(f"train.batch_size {train['batch_size']} must be a multiple of "
                         f"train.accumulate_steps {accumulate}")
    if train["precision"] not in POLICIES:
        raise ValueError(f"train.precision must be one of {', '.join(POLICIES)}, got {train['precision']!r}")
    validation.positive_int("train.log_every_steps", train["log_every_steps"])
    value = train["steps_per_dispatch"]  # a config listing "auto" takes an override of 8 as the string "8"
    train["steps_per_dispatch"] = check_steps_per_dispatch(int(value) if isinstance(value, str) and value.isdigit()
                                                           else value, "train.steps_per_dispatch")
    validation.non_negative_int("train.histogram_freq", train["histogram_freq"])
    for section in ("early_stopping", "reduce_lr_on_plateau"):
        validation.non_negative_int(f"train.{section}.patience", train[section]["patience"])


def _check_per_example(options: dict, model: Layer, spec: data.DatasetSpec) -> None:
    """`train.per_example`'s fields, and a model without batch statistics when it is on."""
    from jaxnn.training.per_example import PerExample, refuse_model_state

    if PerExample.from_options(options) is not None:
        refuse_model_state(abstract_init(model, (None, *spec.input_shape))[2])
