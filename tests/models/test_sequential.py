"""Sequential composition, Keras-style naming and the summary table."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import Dense, Dropout, Flatten, Sequential, summary
from jaxnn.layers import ShapeError


def seed_model():
    return Sequential([Flatten(), Dense(100, "sigmoid"), Dense(10, "softmax")])


def test_summary_matches_keras_for_the_seed_model():
    text = summary(seed_model(), (28, 28), print_fn=None)
    lines = text.splitlines()
    row = lambda name: next(line for line in lines if line.lstrip().startswith(name + " "))
    assert "(None, 784)" in row("flatten") and row("flatten").split()[-1] == "0"
    assert "(None, 100)" in row("dense") and row("dense").split()[-1] == "78,500"
    assert "(None, 10)" in row("dense_1") and row("dense_1").split()[-1] == "1,010"
    assert "Total params: 79,510" in text
    assert "Trainable params: 79,510" in text and "Non-trainable params: 0" in text


def test_add_builds_the_same_model_as_a_list():
    grown = Sequential(name="grown")
    grown.add(Flatten()).add(Dense(100, "sigmoid"))
    grown.add(Dense(10, "softmax"))
    a = seed_model().init(jax.random.key(0), (None, 28, 28))
    b = grown.init(jax.random.key(0), (None, 28, 28))
    assert a[0] == b[0] == (None, 10)
    jax.tree_util.tree_map(np.testing.assert_array_equal, a[1], b[1])


def test_params_are_named_like_keras():
    model = Sequential([Dense(4, name="hidden"), Dense(3), Dropout(0.1), Dense(2)])
    _, params, state = model.init(jax.random.key(0), (None, 5))
    assert list(params) == ["hidden", "dense", "dense_1"] and state == {}
    with pytest.raises(ValueError, match="repeated: a"):
        Sequential([Dense(2, name="a"), Dense(2, name="a")])


def test_sequential_nests_and_applies_in_order():
    inner = Sequential([Dense(3, "relu")], name="block")
    model = Sequential([inner, Dense(2)])
    out_shape, params, _ = model.init(jax.random.key(0), (None, 4))
    assert out_shape == (None, 2) and set(params) == {"block", "dense"}
    x = jnp.ones((5, 4))
    y, _ = model.apply(params, x)
    hidden = np.maximum(np.asarray(x) @ params["block"]["dense"]["kernel"] + params["block"]["dense"]["bias"], 0)
    np.testing.assert_allclose(y, hidden @ params["dense"]["kernel"] + params["dense"]["bias"], rtol=1e-6)


def test_shape_error_names_the_layer_path():
    model = Sequential([Sequential([Dense(3)], name="block"), Dense(2)])
    _, params, _ = model.init(jax.random.key(0), (None, 4))
    with pytest.raises(ShapeError, match=r"^block/dense: .*got shape \(1, 6\)"):
        model.apply(params, jnp.ones((1, 6)))


def test_bad_models_are_rejected():
    with pytest.raises(ValueError, match="has no layers"):
        Sequential().init(jax.random.key(0), (None, 3))
    with pytest.raises(ValueError, match="takes jaxnn layers, got int"):
        Sequential([3])


def test_a_nested_model_is_one_summary_row_as_in_keras():
    base = Sequential([Dense(64, "relu"), Dense(64, "relu", trainable=False)], name="base")
    inp = jaxnn.Input((64,))
    head = jaxnn.Model(inp, Dense(10, "softmax")(inp), name="head")
    text = Sequential([base, head]).summary((784,), print_fn=None)
    rows = [line.split() for line in text.splitlines() if "(" in line and "Model:" not in line][1:]
    assert rows == [["base", "(Sequential)", "(None,", "64)", "54,400"], ["head", "(Model)", "(None,", "10)", "650"]]
    assert "Trainable params: 50,890" in text and "Non-trainable params: 4,160" in text
    assert "input_layer" not in text and "Connected" not in text
