"""Whole models on disk: the architecture as JSON, the parameters and model state through orbax, the config.

    jaxnn.save_model("models/mlp", model, state, input_shape=(28, 28, 1))   # state: a TrainState or variables
    model, variables = jaxnn.load_model("models/mlp")
    probs, _ = model.apply(variables["params"], images, state=variables["model_state"])
    model, variables = jaxnn.load_run("runs/mlp")                           # a train.py workdir

A model directory holds `model.json` (the format, the architecture from
`jaxnn.models.serialization`, the input shape and dtype of one example),
`variables/` (a checksummed `jaxnn.checkpoint` of `{"params", "model_state"}`)
and, when given, the training `config.json`. It is built beside `path` and
renamed into place, so a reader sees a whole model or none. No pickle:
objects the JSON cannot hold are written by name and given again to
`load_model` in `custom_objects`, as in Keras.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp

from jaxnn.checkpoint import load_tree, save_tree
from jaxnn.export import check_variables, example_shapes, split_variables
from jaxnn.io import publish_dir
from jaxnn.layers.shapes import abstract_init, is_shape
from jaxnn.models.serialization import deserialize, serialize
from jaxnn.training.members import members_spec

MODEL_FORMAT = "jaxnn.model"
FORMAT_VERSION = 1
MODEL_FILE = "model.json"
CONFIG_FILE = "config.json"
VARIABLES_DIR = "variables"


def save_model(path, model, variables, *, input_shape=None, dtype="float32", config=None,
               custom_objects: dict | None = None) -> str:
    """Write `model` and its `variables` (a TrainState or `{"params", "model_state"}`) as a model directory.

    `input_shape` is one example's shape without the batch dimension (a graph
    `Model` knows its own, a `Sequential` needs it); `dtype` is the inputs'.
    `config` (a ConfigDict or a dict) is written as config.json. `custom_objects`
    ({name: object}) names objects whose `__name__` will not do (a lambda).
    An existing model at `path` is replaced; any other existing file or
    non-empty directory is refused. Returns the absolute `path`.
    """
    params, model_state = split_variables(variables)
    shapes = example_shapes(model, input_shape)
    try:
        dtype = jnp.dtype(dtype).name
    except TypeError:
        raise ValueError(f"dtype must name a dtype (e.g. 'float32', 'int32'), got {dtype!r}") from None
    check_variables(model, shapes, params, model_state)
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not (os.path.isdir(path) and (not os.listdir(path) or
                                                                os.path.isfile(os.path.join(path, MODEL_FILE)))):
        raise ValueError(f"{path} exists and is not a jaxnn model directory: save the model elsewhere "
                         f"(an existing model is replaced, nothing else is)")
    record = {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "input_shape": shapes, "dtype": dtype,
              **serialize(model, custom_objects)}

    def write(staging):
        save_tree(os.path.join(staging, VARIABLES_DIR), {"params": params, "model_state": model_state})
        with open(os.path.join(staging, MODEL_FILE), "w") as f:
            json.dump(record, f, indent=1)
        if config is not None:
            with open(os.path.join(staging, CONFIG_FILE), "w") as f:
                f.write(config.to_json(indent=2) if hasattr(config, "to_json") else json.dumps(config, indent=2))

    return publish_dir(path, write)


def read_record(path) -> dict:
    """The `model.json` of the model directory `path`; ValueError if `path` is not one."""
    path = os.fspath(path)
    file = os.path.join(path, MODEL_FILE)
    if not os.path.isfile(file):
        raise ValueError(f"{path} is not a jaxnn model directory (no {MODEL_FILE}; jaxnn.save_model writes one)")
    try:
        with open(file) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{file} is not readable JSON: {e}") from None
    if not isinstance(record, dict) or record.get("format") != MODEL_FORMAT:
        raise ValueError(f"{file} is not a jaxnn model file (its format is not {MODEL_FORMAT!r})")
    if record.get("version") != FORMAT_VERSION:
        raise ValueError(f"{file} has format version {record.get('version')!r}; this jaxnn reads {FORMAT_VERSION}")
    return record


def load_model(path, custom_objects: dict | None = None):
    """`(model, variables)` from a directory `save_model` wrote; variables are `{"params", "model_state"}`.

    Objects saved by name are taken from `custom_objects` ({name: object});
    a missing one, or arrays that do not fit the architecture, raise one ValueError line naming it.
    """
    record = read_record(path)
    model = deserialize(record, custom_objects)
    shapes = jax.tree_util.tree_map(tuple, record["input_shape"], is_leaf=is_shape)
    return model, _read_variables(os.path.join(os.fspath(path), VARIABLES_DIR), model, shapes)


def _read_variables(path: str, model, shapes, members: int | None = None) -> dict:
    """`{"params", "model_state"}` from the checkpoint at `path`, checked against `model` on inputs of `shapes`
    (with `members`: an ensemble's, every array with a leading member axis)."""
    full = jax.tree_util.tree_map(lambda s: (None, *s), shapes, is_leaf=is_shape)
    _, params, model_state = abstract_init(model, full)
    like = {"params": params, "model_state": model_state}
    if members is not None:
        like = members_spec(like, members)
    if not os.path.isdir(path):
        raise ValueError(f"{path} is missing: the model's parameters are not there")
    return load_tree(path, like=like)


def read_config(directory: str):
    """The `config.json` a run wrote into `directory` (a workdir or a model directory), as a ConfigDict."""
    import ml_collections

    path = os.path.join(directory, CONFIG_FILE)
    with open(path) as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}): the file is damaged") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, not a config: it is damaged")
    return ml_collections.ConfigDict(config)


def load_experiment(workdir, *, members: bool = False):
    """`(config, experiment, variables)` of a finished train.py classify run: its config.json and checkpoints/final.

    A sweep's run is refused unless `members`: then its variables keep the members' leading axis.
    """
    from jaxnn.config import build

    workdir = os.fspath(workdir)
    if os.path.isfile(os.path.join(workdir, MODEL_FILE)):
        raise ValueError(f"{workdir} is a saved model, not a train.py workdir: load it with "
                         f"jaxnn.load_model({workdir!r})")
    file = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(file):
        raise ValueError(f"{workdir} is not a finished train.py run (no {CONFIG_FILE})")
    config = read_config(workdir)
    task = config.get("task", "classify")
    if task != "classify":
        raise ValueError(f"{workdir} is a {task!r} run; load_run reads classify runs (save_model/load_model take any)")
    experiment = build(config)
    if experiment.members and not members:
        raise ValueError(f"{workdir} is a sweep of {len(experiment.members)} models; load one of them with "
                         f"load_model('{os.path.join(workdir, 'model', 'member_<i>')}')")
    final = os.path.join(workdir, "checkpoints", "final")
    return config, experiment, _read_variables(final, experiment.model, experiment.data_spec.input_shape,
                                               len(experiment.members) or None)


def load_run(workdir):
    """`(model, variables)` of a train.py workdir, the model rebuilt from the run's config as the task built it."""
    _, experiment, variables = load_experiment(workdir)
    return experiment.model, variables
