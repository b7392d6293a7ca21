"""Export a trained model for serving: StableHLO through `jax.export`, or a TensorFlow SavedModel through jax2tf.

    from jaxnn.export import export, load_stablehlo
    export(model, state, "exported/mlp", input_shape=(28, 28, 1))   # state: a TrainState or {"params", "model_state"}
    predict = load_stablehlo("exported/mlp")
    probs = predict(images)                                          # any batch size

Both formats run the model in inference mode (`train=False`) with a symbolic
batch dimension (and a symbolic size for every other `None` in the input
shape), and write a directory atomically: it is built beside `path` and
renamed into place, so a reader sees the old export or the new one, never
half of one. Each directory holds `export.json`: the input and output shapes
(None where symbolic) and dtypes, the format, and the jax and jaxnn versions.

- "stablehlo": `model.stablehlo`, the serialized `jax.export.Exported`, lowered
  for CPU and CUDA (`platforms`). The parameters are baked in as constants,
  so the file is the whole model: a serving process needs only jax and the
  input, and cannot pair the program with the wrong weights. Loading needs nothing but jax:

      exported = jax.export.deserialize(bytearray(open("exported/mlp/model.stablehlo", "rb").read()))
      probs = exported.call(images)

- "tf_saved_model": a SavedModel (TensorFlow Serving, `tf.saved_model.load`)
  with the parameters as non-trainable `tf.Variable`s and a `serving_default`
  signature taking the inputs by name (`inputs`; `inputs_0`, `inputs_1`, ... or
  the dict's keys for several) and returning them by name (`output`;
  `output_0`, ... or the dict's keys for several).
  The model runs as StableHLO inside TensorFlow (jax2tf's native
  serialization), as TensorFlow Serving runs it. TF Serving expects a version
  directory: export to `models/mlp/1`.
"""
from __future__ import annotations

import importlib.metadata
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.io import publish_dir
from jaxnn.layers import Layer, is_shape

FORMATS = ("stablehlo", "tf_saved_model")
STABLEHLO_FILE = "model.stablehlo"
METADATA_FILE = "export.json"
PLATFORMS = ("cpu", "cuda")
KNOWN_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # jax.export's names


def export(model, variables, path, *, format: str = "stablehlo", input_shape=None, dtype="float32",
           overwrite: bool = False, platforms=PLATFORMS) -> str:
    """Write `model` with `variables` as a serving artifact at directory `path`; returns `path`.

    `variables` is a TrainState (anything with `.params` and `.model_state`) or
    `{"params": ..., "model_state": ...}`. `input_shape` is the shape of one
    example, without the batch dimension (a structure of them for a graph model
    with several inputs); a graph `Model` knows its own, a `Sequential` needs it.
    `dtype` is the inputs' dtype (one for all, or a structure like `input_shape`).
    `platforms` are the devices the exported program can run on (jax.export's names).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; allowed: {', '.join(FORMATS)}")
    if (isinstance(platforms, str) or not isinstance(platforms, (list, tuple)) or not platforms
            or any(p not in KNOWN_PLATFORMS for p in platforms)):
        raise ValueError(f"platforms must be a non-empty list of {', '.join(KNOWN_PLATFORMS)}, got {platforms!r}")
    path = os.fspath(path)
    _check_target(path, overwrite)
    params, model_state = split_variables(variables)
    shapes = example_shapes(model, input_shape)
    inputs, poly_specs = _symbolic_inputs(shapes, _input_dtypes(dtype, shapes))
    check_variables(model, shapes, params, model_state)

    def infer(params, model_state, x):
        return model.apply(params, x, state=model_state, train=False)[0]

    outputs = _trace_outputs(model, infer, params, model_state, inputs)
    metadata = {"format": format, "inputs": _describe(inputs), "outputs": _describe(outputs),
                "jax_version": jax.__version__, "jaxnn_version": _jaxnn_version()}
    if format == "stablehlo":
        exported = jax.export.export(jax.jit(lambda x: infer(params, model_state, x)), platforms=platforms)(inputs)
        metadata |= {"file": STABLEHLO_FILE, "platforms": list(exported.platforms)}

        def write(directory):
            with open(os.path.join(directory, STABLEHLO_FILE), "wb") as f:
                f.write(exported.serialize())
    else:
        def write(directory):
            _save_tf(infer, params, model_state, inputs, outputs, poly_specs, platforms, directory)
    _publish(path, overwrite, write, metadata)
    return path


def load_stablehlo(path):
    """The function a "stablehlo" export at directory `path` computes: `predict(x) -> y`, jitted, any batch size."""
    file = os.path.join(os.fspath(path), STABLEHLO_FILE)
    if not os.path.isfile(file):
        raise ValueError(f"{path} holds no {STABLEHLO_FILE}: not a jaxnn stablehlo export")
    with open(file, "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    return jax.jit(exported.call)


def _check_target(path: str, overwrite: bool):
    taken = os.path.lexists(path) and not (os.path.isdir(path) and not os.listdir(path))
    if taken and not overwrite:
        raise ValueError(f"export path {path} exists and is not empty; pass overwrite=True to replace it")


def split_variables(variables):
    """(params, model_state) from a TrainState or a {"params", "model_state"} dict."""
    if hasattr(variables, "params") and hasattr(variables, "model_state"):
        return variables.params, variables.model_state
    if isinstance(variables, dict) and "params" in variables and set(variables) <= {"params", "model_state"}:
        return variables["params"], variables.get("model_state", {})
    got = f"a dict with keys {sorted(variables)}" if isinstance(variables, dict) else type(variables).__name__
    raise ValueError(f"variables must be a TrainState or a dict {{'params': ..., 'model_state': ...}}, got {got}")


def example_shapes(model, input_shape):
    """The shape(s) of one example: `input_shape` as given, else the graph model's declared one without batch."""
    if input_shape is None:
        declared = getattr(model, "input_shape", None)
        if declared is None:
            raise ValueError(f"input_shape is needed: {type(model).__name__} declares no input shape; pass the shape "
                             f"of one example without the batch dimension, e.g. input_shape=(28, 28, 1)")
        return jax.tree_util.tree_map(lambda s: tuple(s[1:]), declared, is_leaf=is_shape)

    def example_shape(shape):
        if not is_shape(shape) or any(d is not None and d <= 0 for d in shape):
            raise ValueError(f"input_shape must be a tuple of positive ints or None (one example, no batch "
                             f"dimension), or a tuple/dict of such for several inputs; got {input_shape!r}")
        return tuple(shape)

    return jax.tree_util.tree_map(example_shape, input_shape, is_leaf=is_shape)


def _input_dtypes(dtype, shapes) -> list:
    """One dtype per input, in flattened order: `dtype` for all, or `dtype` structured like `shapes`."""
    treedef = jax.tree_util.tree_structure(shapes, is_leaf=is_shape)
    if not isinstance(dtype, (tuple, list, dict)):
        dtypes = [dtype] * treedef.num_leaves
    else:
        try:
            dtypes = treedef.flatten_up_to(dtype)
        except (ValueError, TypeError):
            raise ValueError(f"dtype must be one dtype or structured like the input shapes {shapes!r}, "
                             f"got {dtype!r}") from None
    return [_as_dtype(d, dtype) for d in dtypes]


def _as_dtype(d, given):
    if isinstance(d, (str, type, np.dtype)):
        try:
            return jnp.dtype(d)
        except TypeError:
            pass
    raise ValueError(f"dtype must name dtypes (e.g. 'float32', 'int32'), got {given!r}")


def _symbolic_inputs(shapes, dtypes):
    """ShapeDtypeStructs with batch `b` (and `d{input}_{axis}` for other None dims), and their jax2tf specs."""
    scope = jax.export.SymbolicScope()
    leaves, treedef = jax.tree_util.tree_flatten(shapes, is_leaf=is_shape)
    specs = [", ".join(["b", *(f"d{i}_{axis}" if d is None else str(d) for axis, d in enumerate(shape, 1))])
             for i, shape in enumerate(leaves)]
    structs = [jax.ShapeDtypeStruct(jax.export.symbolic_shape(spec, scope=scope), dtype)
               for spec, dtype in zip(specs, dtypes)]
    return treedef.unflatten(structs), treedef.unflatten([f"({spec})" for spec in specs])


def check_variables(model, shapes, params, model_state):
    """Refuse variables whose tree or shapes differ from what `model.init` makes, naming the first difference."""
    full_shapes = jax.tree_util.tree_map(lambda s: (None, *s), shapes, is_leaf=is_shape)
    want_params, want_state = jax.eval_shape(lambda key: model.init(key, full_shapes)[1:], jax.random.key(0))
    want = _leaf_shapes({"params": want_params, "model_state": want_state})
    got = _leaf_shapes({"params": params, "model_state": model_state})
    for name, shape in want.items():
        if name not in got:
            raise ValueError(f"variables do not match the model: {name} is missing (the model has {shape})")
        if got[name] != shape:
            ensemble = (f"; an ensemble's state has a leading member axis ({got[name][0]} members): give one "
                        "member, jaxnn.training.members.member(state, i)" if got[name][1:] == shape else "")
            raise ValueError(f"variables do not match the model: {name} has shape {got[name]}, the model's is "
                             f"{shape}{ensemble}")
    extra = sorted(got.keys() - want.keys())
    if extra:
        raise ValueError(f"variables do not match the model: {extra[0]} is not in the model")


def _trace_outputs(model, infer, params, model_state, inputs):
    """The output ShapeDtypeStructs; a layer that needs a concrete batch size is named in one line."""
    try:
        return jax.eval_shape(infer, params, model_state, inputs)
    except jax.errors.InconclusiveDimensionOperation as e:
        layer = _innermost_layer(e.__traceback__) or model
        label = type(layer).__name__ + (f" '{layer.name}'" if layer.name else "")
        raise ValueError(f"{label} cannot run with a symbolic batch dimension: {str(e).splitlines()[0]}") from None


def _innermost_layer(tb) -> Layer | None:
    """The deepest layer whose method is on the traceback `tb`."""
    layer = None
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("self")
        if isinstance(candidate, Layer):
            layer = candidate
        tb = tb.tb_next
    return layer


def _leaf_shapes(tree) -> dict:
    return {jax.tree_util.keystr(path, simple=True, separator="/"): tuple(np.shape(leaf))
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _describe(structs):
    """Shapes (None for symbolic dims) and dtypes, as plain JSON."""
    def one(s):
        return {"shape": [d if isinstance(d, int) else None for d in s.shape], "dtype": str(s.dtype)}
    return jax.tree_util.tree_map(one, structs)


def _leaf_names(tree, prefix: str) -> list[str]:
    """Names for a structure's arrays: `prefix` for one, dict keys for a dict, `prefix_0`, ... for a sequence."""
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    if paths == [()]:
        return [prefix]
    names = [jax.tree_util.keystr(path, simple=True, separator="_") for path in paths]
    return [name if isinstance(path[0], jax.tree_util.DictKey) else f"{prefix}_{name}"
            for name, path in zip(names, paths)]


def _save_tf(infer, params, model_state, inputs, outputs, poly_specs, platforms, directory):
    """A SavedModel of `infer` with the variables as tf.Variables and a `serving_default` signature."""
    import tensorflow as tf  # costs seconds: only this format needs it
    from jax.experimental import jax2tf

    var_leaves, var_treedef = jax.tree_util.tree_flatten((params, model_state))
    in_treedef = jax.tree_util.tree_structure(inputs)
    output_names = _leaf_names(outputs, "output")
    converted = jax2tf.convert(lambda v, x: infer(*v, x), polymorphic_shapes=[None, poly_specs], with_gradient=False,
                               native_serialization_platforms=platforms)
    module = tf.Module()
    module.model_variables = [tf.Variable(np.asarray(leaf), trainable=False) for leaf in var_leaves]
    signature = [tf.TensorSpec([None, *(d if isinstance(d, int) else None for d in s.shape[1:])], s.dtype, name=name)
                 for s, name in zip(jax.tree_util.tree_leaves(inputs), _leaf_names(inputs, "inputs"))]

    @tf.function(autograph=False, input_signature=signature)
    def serve(*flat_inputs):
        y = converted(var_treedef.unflatten(list(module.model_variables)), in_treedef.unflatten(flat_inputs))
        return dict(zip(output_names, jax.tree_util.tree_leaves(y)))

    module.serve = serve
    tf.saved_model.save(module, directory, signatures={"serving_default": serve})


def _publish(path: str, overwrite: bool, write, metadata: dict):
    """Build the export in a temporary directory beside `path`, then rename it into place."""
    def write_all(staging):
        write(staging)
        with open(os.path.join(staging, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2)

    publish_dir(path, write_all, check=lambda: _check_target(path, overwrite))  # it may have appeared meanwhile


def _jaxnn_version():
    try:
        return importlib.metadata.version("jaxnn")
    except importlib.metadata.PackageNotFoundError:  # run from a source checkout that was not installed
        return None
