"""jaxnn.export: the exported function computes what `apply` does, at any batch size, in both formats."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jaxnn
from jaxnn.export import export, load_stablehlo

BATCHES = (1, 7)


def _mlp():
    model = jaxnn.Sequential([jaxnn.Flatten(), jaxnn.Dense(512, "relu"), jaxnn.Dropout(0.2),
                              jaxnn.Dense(256, "relu"), jaxnn.Dense(10, "softmax")])
    _, params, state = model.init(jax.random.key(0), (None, 28, 28, 1))
    return model, {"params": params, "model_state": state}, {"input_shape": (28, 28, 1)}, lambda n: _images(n, (28, 28, 1))


def _cnn():
    """BatchNormalization's moving statistics moved away from their initial values, so model_state matters."""
    model = jaxnn.Sequential([jaxnn.Conv2D(4, 3, activation="relu"), jaxnn.BatchNormalization(),
                              jaxnn.MaxPooling2D(2), jaxnn.Flatten(), jaxnn.Dense(10, "softmax")])
    _, params, state = model.init(jax.random.key(1), (None, 8, 8, 1))
    _, state = model.apply(params, _images(16, (8, 8, 1)), state=state, train=True)
    return model, {"params": params, "model_state": state}, {"input_shape": (8, 8, 1)}, lambda n: _images(n, (8, 8, 1))


def _graph():
    """Two inputs, a shared layer, a dict of two outputs; the model declares its input shapes."""
    image, features = jaxnn.Input((8, 8, 1), name="image"), jaxnn.Input((5,), name="features")
    shared = jaxnn.Dense(5, "relu")
    outputs = {"probs": jaxnn.Dense(3, "softmax")(shared(features)),
               "score": jaxnn.Dense(1)(shared(jaxnn.Dense(5)(jaxnn.Flatten()(image))))}
    model = jaxnn.Model([image, features], outputs)
    _, params, state = model.init(jax.random.key(2), model.input_shape)
    return model, {"params": params, "model_state": state}, {}, lambda n: (_images(n, (8, 8, 1)), _images(n, (5,)))


MODELS = {"mlp": _mlp, "cnn": _cnn, "graph": _graph}


def _images(n, shape):
    return np.random.default_rng(n).random((n, *shape), dtype=np.float32)


def _max_difference(want, got) -> float:
    return max(jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), want, got)))


def _apply(model, variables, x):
    return model.apply(variables["params"], x, state=variables["model_state"])[0]


@pytest.mark.parametrize("kind", MODELS)
def test_stablehlo_matches_apply(kind, tmp_path):
    model, variables, kwargs, make_x = MODELS[kind]()
    export(model, variables, tmp_path / "m", **kwargs)
    predict = load_stablehlo(tmp_path / "m")
    for n in BATCHES:
        x = make_x(n)
        assert _max_difference(_apply(model, variables, x), predict(x)) <= 1e-6


@pytest.mark.parametrize("kind", MODELS)
def test_tf_saved_model_matches_apply(kind, tmp_path):
    tf = pytest.importorskip("tensorflow")
    model, variables, kwargs, make_x = MODELS[kind]()
    export(model, variables, tmp_path / "m", format="tf_saved_model", **kwargs)
    serve = tf.saved_model.load(str(tmp_path / "m")).signatures["serving_default"]
    for n in BATCHES:
        x = make_x(n)
        want = _apply(model, variables, x)
        names = ["inputs"] if not isinstance(x, tuple) else ["inputs_0", "inputs_1"]
        got = serve(**{name: tf.constant(a) for name, a in zip(names, jax.tree_util.tree_leaves(x))})
        got = got if isinstance(want, dict) else got["output"]
        assert _max_difference(want, got) <= 1e-6


def test_stablehlo_loads_with_jax_alone(tmp_path):
    """A serving process imports jax, numpy and json, never jaxnn; the JSON tells it the shapes."""
    model, variables, kwargs, make_x = _mlp()
    export(model, variables, tmp_path / "m", **kwargs)
    np.save(tmp_path / "x.npy", make_x(7))
    script = textwrap.dedent("""
        import json, sys
        import jax, numpy as np
        meta = json.load(open("m/export.json"))
        assert meta["inputs"] == {"shape": [None, 28, 28, 1], "dtype": "float32"}, meta
        assert meta["outputs"] == {"shape": [None, 10], "dtype": "float32"}, meta
        exported = jax.export.deserialize(bytearray(open("m/" + meta["file"], "rb").read()))
        np.save("y.npy", np.asarray(exported.call(np.load("x.npy"))))
        assert not [m for m in sys.modules if m.split(".")[0] == "jaxnn"]
    """)
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, timeout=300)
    assert _max_difference(_apply(model, variables, make_x(7)), np.load(tmp_path / "y.npy")) <= 1e-6


def test_symbolic_sizes_beyond_the_batch(tmp_path):
    """A None in the example shape (a sequence length) stays symbolic: one export serves every length."""
    model = jaxnn.Sequential([jaxnn.Embedding(20, 4), jaxnn.GlobalAveragePooling1D(), jaxnn.Dense(2)])
    _, params, _ = model.init(jax.random.key(3), (None, None))
    export(model, {"params": params}, tmp_path / "m", input_shape=(None,), dtype="int32")
    predict = load_stablehlo(tmp_path / "m")
    for shape in ((1, 3), (7, 9)):
        ids = np.arange(np.prod(shape), dtype=np.int32).reshape(shape) % 20
        assert _max_difference(model.apply(params, ids)[0], predict(ids)) <= 1e-6
    assert json.loads((tmp_path / "m" / "export.json").read_text())["inputs"]["shape"] == [None, None]


def test_dict_inputs_of_several_dtypes(tmp_path):
    ids, features = jaxnn.Input((4,), name="ids"), jaxnn.Input((3,), name="features")
    outputs = [jaxnn.Dense(2)(jaxnn.Flatten()(jaxnn.Embedding(10, 2)(ids))), jaxnn.Dense(1)(features)]
    model = jaxnn.Model({"ids": ids, "features": features}, outputs)
    _, params, _ = model.init(jax.random.key(5), model.input_shape)
    export(model, {"params": params}, tmp_path / "m", dtype={"ids": "int32", "features": "float32"})
    x = {"ids": np.arange(28, dtype=np.int32).reshape(7, 4) % 10, "features": _images(7, (3,))}
    assert _max_difference(model.apply(params, x)[0], load_stablehlo(tmp_path / "m")(x)) <= 1e-6
    assert json.loads((tmp_path / "m" / "export.json").read_text())["inputs"]["ids"]["dtype"] == "int32"


def test_accepts_a_train_state(tmp_path):
    model, variables, kwargs, make_x = _cnn()
    state = jaxnn.TrainState(step=np.int32(0), params=variables["params"], model_state=variables["model_state"],
                             opt_state=(), key=jax.random.key(0))
    export(model, state, tmp_path / "m", **kwargs)
    assert _max_difference(_apply(model, variables, make_x(7)), load_stablehlo(tmp_path / "m")(make_x(7))) <= 1e-6


def test_merge_layers_export(tmp_path):
    a, b = jaxnn.Input((3,)), jaxnn.Input((3,))
    model = jaxnn.Model([a, b], jaxnn.Dense(2)(jaxnn.Concatenate()([a, b])))
    _, params, _ = model.init(jax.random.key(4), model.input_shape)
    export(model, {"params": params}, tmp_path / "m")
    x = (_images(7, (3,)), _images(8, (3,))[:7])
    assert _max_difference(model.apply(params, x)[0], load_stablehlo(tmp_path / "m")(x)) <= 1e-6


def test_overwrite(tmp_path):
    model, variables, kwargs, make_x = _mlp()
    (tmp_path / "m").mkdir()
    export(model, variables, tmp_path / "m", **kwargs)  # an empty directory is free
    with pytest.raises(ValueError, match="exists and is not empty; pass overwrite=True"):
        export(model, variables, tmp_path / "m", **kwargs)
    (tmp_path / "m" / "stale.txt").write_text("from before")
    export(model, variables, tmp_path / "m", overwrite=True, **kwargs)
    assert sorted(os.listdir(tmp_path / "m")) == ["export.json", "model.stablehlo"]
    assert os.listdir(tmp_path) == ["m"]


def test_a_failed_export_leaves_the_old_one(tmp_path, monkeypatch):
    model, variables, kwargs, make_x = _mlp()
    export(model, variables, tmp_path / "m", **kwargs)
    before = (tmp_path / "m" / "model.stablehlo").read_bytes()

    def fail(directory):
        raise OSError("disk full")

    monkeypatch.setattr(jax.export.Exported, "serialize", fail)
    with pytest.raises(OSError, match="disk full"):
        export(model, variables, tmp_path / "m", overwrite=True, **kwargs)
    assert (tmp_path / "m" / "model.stablehlo").read_bytes() == before
    assert os.listdir(tmp_path) == ["m"]


def _params_with(params, layer, **arrays):
    return {**params, layer: {**params[layer], **arrays}}


@pytest.mark.parametrize("change, message", [
    (lambda v: {"params": v["params"]},
     "variables do not match the model: model_state/batch_normalization/moving_mean is missing"),
    (lambda v: {**v, "params": _params_with(v["params"], "dense", kernel=np.zeros((5, 10), np.float32))},
     r"variables do not match the model: params/dense/kernel has shape \(5, 10\), the model's is \(36, 10\)"),
    (lambda v: {**v, "params": _params_with(v["params"], "dense", extra=np.zeros(3, np.float32))},
     "variables do not match the model: params/dense/extra is not in the model"),
    (lambda v: v["params"], r"variables must be a TrainState or a dict \{'params': ..., 'model_state': ...\}, "
                            r"got a dict with keys \['batch_normalization', 'conv2d', 'dense'\]"),
])
def test_variables_that_do_not_match(change, message, tmp_path):
    model, variables, kwargs, _ = _cnn()
    with pytest.raises(ValueError, match="^" + message):
        export(model, change(variables), tmp_path / "m", **kwargs)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"format": "onnx", "input_shape": (28, 28, 1)}, "unknown export format 'onnx'; allowed: stablehlo, tf_saved_model"),
    ({}, r"input_shape is needed: Sequential declares no input shape; pass the shape of one example"),
    ({"input_shape": 784}, "input_shape must be a tuple of positive ints or None"),
    ({"input_shape": (28, 0, 1)}, "input_shape must be a tuple of positive ints or None"),
    ({"input_shape": (28, 28, 1), "dtype": "float33"}, "dtype must name dtypes"),
    ({"input_shape": (28, 28, 1), "dtype": ("float32", "int32")}, "dtype must name dtypes"),
    ({"input_shape": (28, 28, 1), "platforms": ("tpux",)},
     r"platforms must be a non-empty list of cpu, cuda, rocm, tpu, got \('tpux',\)"),
    ({"input_shape": (28, 28, 1), "platforms": "cpu"}, "platforms must be a non-empty list"),
])
def test_bad_arguments(kwargs, message, tmp_path):
    model, variables, _, _ = _mlp()
    with pytest.raises(ValueError, match="^" + message) as info:
        export(model, variables, tmp_path / "m", **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "m").exists()


def test_load_refuses_what_is_not_an_export(tmp_path):
    with pytest.raises(ValueError, match="holds no model.stablehlo: not a jaxnn stablehlo export"):
        load_stablehlo(tmp_path)
