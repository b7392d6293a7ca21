"""save_model / load_model round trips for every kind of model (bit-identical predictions), and their errors."""
import json

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxnn
from jaxnn import (LSTM, BatchNormalization, Bidirectional, Concatenate, Conv2D, Dense, Dropout, Embedding, FlaxModule,
                   FlaxNNX, Flatten, FunctionLayer, Input, Model, Sequential)
from jaxnn.checkpoint import save_tree


def scale_init(key, input_shape):
    return input_shape, {"scale": jax.random.uniform(key, input_shape[-1:])}


def scale_apply(params, x):
    return x * params["scale"]


def swish_ish(x):
    return x * jax.nn.sigmoid(2 * x)


class CNN(flax.linen.Module):
    features: int = 4

    @flax.linen.compact
    def __call__(self, x, train: bool = False):
        x = flax.linen.Conv(self.features, (3, 3))(x)
        x = flax.linen.BatchNorm(use_running_average=not train)(x)
        return flax.linen.Dense(3)(x.reshape(x.shape[0], -1))


class Tiny(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(6, 2, rngs=rngs)

    def __call__(self, x):
        return self.dense(x)


def make_tiny(rngs):
    return Tiny(rngs)


def sequential():
    return Sequential([Flatten(), Dense(16, "relu"), Dropout(0.3), Dense(10, "softmax")]), (6, 6)


def graph_shared_two_outputs():
    a, b = Input((5,), name="left"), Input((5,), name="right")
    shared = Dense(4, "tanh", name="shared")
    h = Concatenate()([shared(a), shared(b)])
    return Model([a, b], {"label": Dense(3, "softmax")(h), "score": Dense(1)(shared(a))}, name="siamese"), None


def nested():
    x = Input((6,))
    inner = Model(x, Dense(5, "relu")(x), name="inner")
    block = Sequential([inner, Dense(4)], name="block")
    y = Input((6,), name="features")
    return Model(y, [block(y), Dense(2)(block(y))], name="outer"), None


def batchnorm_state():
    return Sequential([Conv2D(3, 3, use_bias=False), BatchNormalization(), Flatten(), Dense(2)]), (6, 6, 1)


def custom_objects_model():
    model = Sequential([Flatten(), FunctionLayer(scale_init, scale_apply, name="scale"), Dense(6, swish_ish),
                        FlaxNNX(make_tiny, name="tiny")])
    return model, (2, 3)


def flax_linen():
    return Sequential([FlaxModule(CNN(features=2), name="cnn"), Dense(2, activation=jaxnn.activations.relu)]), (5, 5, 1)


FLAX_DENSE = flax.linen.Dense(4)  # its fields are not all plain values: saved by name, given back as this instance


def flax_dense_beside_dense():
    # The Flax module is saved under its class name, "Dense": loading must still build jaxnn's Dense as Dense.
    return Sequential([FlaxModule(FLAX_DENSE, name="flax_dense"), Dense(2)]), (3,)


def recurrent():
    return Sequential([Embedding(20, 4, mask_zero=True), Bidirectional(LSTM(3, return_sequences=True)),
                       LSTM(2)]), (7,)


CUSTOM = {"scale_init": scale_init, "scale_apply": scale_apply, "swish_ish": swish_ish, "make_tiny": make_tiny,
          "CNN": CNN, "Dense": FLAX_DENSE}
KINDS = [sequential, graph_shared_two_outputs, nested, batchnorm_state, custom_objects_model, flax_linen,
         flax_dense_beside_dense, recurrent]


def _inputs(shape, key):
    if shape == (7,):
        return jax.random.randint(key, (3, 7), 0, 20)
    return jax.random.normal(key, (3, *shape))


def _variables(model, shape):
    _, params, state = model.init(jax.random.key(0), (None, *shape) if shape is not None else model.input_shape)
    if state:  # moving statistics away from their initial values, so that a lost state would show
        x = jax.random.normal(jax.random.key(2), (4, *shape))
        _, state = model.apply(params, x, state=state, train=True, key=jax.random.key(3))
    return {"params": params, "model_state": state}


def _example(model, shape):
    if shape is not None:
        return _inputs(shape, jax.random.key(1))
    arrays = [jax.random.normal(jax.random.key(i), (3, *t.shape[1:]))
              for i, t in enumerate(jax.tree_util.tree_leaves(model.inputs))]
    return arrays if len(arrays) > 1 else arrays[0]


@pytest.mark.parametrize("make", KINDS, ids=lambda f: f.__name__)
def test_round_trip_predicts_bit_for_bit(tmp_path, make):
    model, shape = make()
    variables = _variables(model, shape)
    jaxnn.save_model(tmp_path / "m", model, variables, input_shape=shape,
                     dtype="int32" if shape == (7,) else "float32")
    loaded, loaded_variables = jaxnn.load_model(tmp_path / "m", custom_objects=CUSTOM)
    x = _example(model, shape)
    want, _ = model.apply(variables["params"], x, state=variables["model_state"])
    got, _ = loaded.apply(loaded_variables["params"], x, state=loaded_variables["model_state"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded_variables, variables)
    assert type(loaded) is type(model) and loaded.name == model.name


def test_a_shared_layer_is_one_entry_called_twice(tmp_path):
    model, _ = graph_shared_two_outputs()
    jaxnn.save_model(tmp_path / "m", model, _variables(model, None))
    record = json.loads((tmp_path / "m" / "model.json").read_text())
    graph = record["model"]
    assert list(graph["layers"]) == ["left", "right", "shared", "concatenate", "dense", "dense_1"]
    assert [n["inputs"] for n in graph["nodes"] if n["layer"] == "shared"] == [
        ["left", 0, 0], ["right", 0, 0], ["left", 0, 0]]
    assert graph["outputs"] == {"dict": {"label": ["dense", 0, 0], "score": ["dense_1", 0, 0]}}
    assert record["custom_objects"] == {} and record["input_shape"] == [[5], [5]]


def test_config_is_saved_beside_the_model(tmp_path):
    import ml_collections

    model, shape = sequential()
    config = ml_collections.ConfigDict({"train": {"epochs": 3}})
    jaxnn.save_model(tmp_path / "m", model, _variables(model, shape), input_shape=shape, config=config)
    assert json.loads((tmp_path / "m" / "config.json").read_text()) == {"train": {"epochs": 3}}


def test_saving_again_replaces_the_model_and_leaves_no_temporary(tmp_path):
    model, shape = sequential()
    jaxnn.save_model(tmp_path / "m", model, _variables(model, shape), input_shape=shape)
    bigger = Sequential([Flatten(), Dense(3)])
    jaxnn.save_model(tmp_path / "m", bigger, _variables(bigger, shape), input_shape=shape)
    loaded, _ = jaxnn.load_model(tmp_path / "m")
    assert [type(layer).__name__ for layer in loaded.layers] == ["Flatten", "Dense"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_path_holding_something_else_is_not_replaced(tmp_path):
    model, shape = sequential()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text("{}")
    message = _one_line_error(jaxnn.save_model, tmp_path / "run", model, _variables(model, shape), input_shape=shape)
    assert "exists and is not a jaxnn model directory" in message
    assert (tmp_path / "run" / "results.json").read_text() == "{}"


def _one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_directory_that_is_no_model_is_named(tmp_path):
    save_tree(tmp_path / "ckpt", {"w": jnp.ones(2)})
    assert "is not a jaxnn model directory" in _one_line_error(jaxnn.load_model, tmp_path / "ckpt")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.json").write_text('{"format": "keras"}')
    assert "is not a jaxnn model file" in _one_line_error(jaxnn.load_model, tmp_path / "other")


def test_a_missing_custom_object_is_named_with_where_it_is_used(tmp_path):
    model, shape = custom_objects_model()
    jaxnn.save_model(tmp_path / "m", model, _variables(model, shape), input_shape=shape)
    given = {k: v for k, v in CUSTOM.items() if k != "scale_apply"}
    message = _one_line_error(jaxnn.load_model, tmp_path / "m", custom_objects=given)
    assert message.startswith("the model needs custom objects that were not given: 'scale_apply' "
                              "(layer 'scale' (FunctionLayer) apply_fn)")
    assert "custom_objects={'scale_apply': ...}" in message


def test_arrays_that_do_not_fit_the_architecture_are_named(tmp_path):
    model, shape = sequential()
    jaxnn.save_model(tmp_path / "m", model, _variables(model, shape), input_shape=shape)
    other = Sequential([Flatten(), Dense(17, "relu"), Dropout(0.3), Dense(10, "softmax")])
    jaxnn.save_model(tmp_path / "other", other, _variables(other, shape), input_shape=shape)
    (tmp_path / "m" / "model.json").write_bytes((tmp_path / "other" / "model.json").read_bytes())
    message = _one_line_error(jaxnn.load_model, tmp_path / "m")
    assert "does not match the model" in message and "params/dense/bias" in message


def test_variables_of_another_model_are_refused_before_writing(tmp_path):
    model, shape = sequential()
    other = Sequential([Flatten(), Dense(3)])
    message = _one_line_error(jaxnn.save_model, tmp_path / "m", model, _variables(other, shape), input_shape=shape)
    assert "variables do not match the model" in message
    assert not tmp_path.joinpath("m").exists()


def test_a_lambda_needs_a_name_and_two_objects_cannot_share_one(tmp_path):
    model = Sequential([Dense(2, lambda x: x * 2)])
    variables = _variables(model, (3,))
    assert "has no name to be saved under" in _one_line_error(jaxnn.save_model, tmp_path / "m", model, variables,
                                                              input_shape=(3,))
    double = model.layers[0].activation
    jaxnn.save_model(tmp_path / "m", model, variables, input_shape=(3,), custom_objects={"double": double})
    loaded, _ = jaxnn.load_model(tmp_path / "m", custom_objects={"double": double})
    assert loaded.layers[0].activation is double

    def relu(x):
        return x

    clash = Sequential([Dense(2, swish_ish), Dense(2, relu), Dense(2, jax.nn.relu)])
    message = _one_line_error(jaxnn.save_model, tmp_path / "c", clash, _variables(clash, (3,)), input_shape=(3,))
    assert "two different objects are both named 'relu'" in message
