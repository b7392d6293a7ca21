"""Graph models: execution against hand-written numpy, shared layers, nesting, every graph error, summary."""
import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from jaxnn import Dense, Dropout, Flatten, Input, Model, Sequential, Trainer, summary
from jaxnn.layers import Add, BatchNormalization, Concatenate, Reshape, ShapeError


def _np(params):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)


def relu(z):
    return np.maximum(z, 0)


def two_in_two_out():
    """x -> hidden -> (concat with y) -> a;  hidden + Dense(hidden) (a skip connection) -> b."""
    x, y = Input(shape=(4,), name="x"), Input(shape=(3,), name="y")
    hidden = Dense(5, "relu", name="hidden")(x)
    a = Dense(2, name="a")(Concatenate()([hidden, y]))
    b = Dense(1, "sigmoid", name="b")(Add()([Dense(5, name="skip")(hidden), hidden]))
    return Model(inputs=[x, y], outputs={"a": a, "b": b}, name="two")


def reference(p, x, y):
    """The same computation written by hand in float64 numpy."""
    dense = lambda name, z: z @ p[name]["kernel"] + p[name]["bias"]
    hidden = relu(dense("hidden", x))
    a = dense("a", np.concatenate([hidden, y], axis=-1))
    b = 1 / (1 + np.exp(-dense("b", dense("skip", hidden) + hidden)))
    return {"a": a, "b": b}


def test_graph_with_skip_connection_and_two_inputs_and_outputs_matches_numpy():
    model = two_in_two_out()
    out_shape, params, state = model.init(jax.random.key(0), ((None, 4), (None, 3)))
    assert out_shape == {"a": (None, 2), "b": (None, 1)} and state == {}
    assert sorted(params) == ["a", "b", "hidden", "skip"]
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    want = reference(_np(params), x.astype(np.float64), y.astype(np.float64))
    for inputs in [(x, y), [x, y], {"x": x, "y": y}]:
        got, _ = model.apply(params, inputs)
        assert set(got) == {"a", "b"}
        for k in got:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    jitted, _ = jax.jit(model.apply)(params, (x, y))
    np.testing.assert_allclose(jitted["a"], want["a"], rtol=1e-5, atol=1e-6)


def test_a_layer_called_twice_is_one_shared_layer_and_gets_gradient_from_both_calls():
    shared = Dense(3, name="shared")
    x1, x2 = Input(shape=(2,), name="x1"), Input(shape=(2,), name="x2")
    model = Model([x1, x2], Add()([shared(x1), shared(x2)]))
    _, params, _ = model.init(jax.random.key(0), ((None, 2), (None, 2)))
    assert list(params) == ["shared"]
    a = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
    b = np.array([[0.5, 0.0], [-2.0, 4.0]], np.float32)
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, (a, b))[0]))(params)
    # d sum(x1 K + b + x2 K + b) / dK[i, j] = sum over the batch of x1[:, i] + x2[:, i]
    np.testing.assert_allclose(grads["shared"]["kernel"], np.repeat((a + b).sum(0)[:, None], 3, axis=1), rtol=1e-6)
    np.testing.assert_allclose(grads["shared"]["bias"], np.full(3, 2 * len(a)), rtol=1e-6)


def test_gradients_through_the_graph_match_finite_differences():
    model = two_in_two_out()
    with jax.enable_x64():
        _, params, _ = model.init(jax.random.key(1), ((None, 4), (None, 3)))
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
        x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4)))
        y = jnp.asarray(np.random.default_rng(3).normal(size=(3, 3)))

        def loss(p):
            out, _ = model.apply(p, (x, y))
            return jnp.sum(out["a"] ** 2) + jnp.sum(out["b"])

        jax.test_util.check_grads(jax.jit(loss), (params,), order=1, modes=["rev"])


def test_shared_layer_whose_calls_need_different_parameters_is_rejected():
    shared = Dense(4)
    x, y = Input(shape=(3,)), Input(shape=(5,))
    with pytest.raises(ShapeError, match=r"shared layer 'dense' needs the same parameters at every call: on inputs "
                                         r"\(None, 3\) its params are \{bias: \(4,\), kernel: \(3, 4\)\}, on \(None, 5\)"):
        Model([x, y], Add()([shared(x), shared(y)]))


@pytest.mark.parametrize("build,match", [
    (lambda x: Add()([Dense(3)(x), Dense(4)(x)]),
     r"layer 'add' \(Add\) cannot take the output of 'dense' \(Dense\) \(None, 3\), 'dense' \(Dense\) \(None, 4\): "
     r"Add needs inputs of one shape"),
    (lambda x: Reshape((7,))(Dense(6, name="features")(x)),
     r"layer 'reshape' \(Reshape\) cannot take the output of 'features' \(Dense\) \(None, 6\): .*\(6,\) into \(7,\)"),
])
def test_layers_that_do_not_fit_fail_where_the_graph_is_written(build, match):
    with pytest.raises(ShapeError, match=match):
        build(Input(shape=(2,), name="x"))


def test_an_output_that_needs_a_missing_input_is_a_disconnected_graph():
    x, aux = Input(shape=(4,), name="image"), Input(shape=(3,), name="aux")
    out = Dense(2, name="logits")(Concatenate(name="join")([Dense(3)(x), aux]))
    with pytest.raises(ValueError, match=r"graph disconnected: cannot compute output 'logits' \(None, 2\): layer 'join' "
                                         r"needs input 'aux' \(None, 3\), which is not among the model's inputs \(image\)"):
        Model(inputs=x, outputs=out)
    with pytest.raises(ValueError, match=r"cannot compute output 'aux' \(None, 3\): it is input 'aux' \(None, 3\)"):
        Model(inputs=x, outputs=[Dense(2)(x), aux])


def test_an_input_that_reaches_no_output_is_a_disconnected_graph():
    x, aux = Input(shape=(4,), name="image"), Input(shape=(3,), name="aux")
    with pytest.raises(ValueError, match=r"graph disconnected: input 'aux' \(None, 3\) does not reach any output"):
        Model(inputs=[x, aux], outputs=Dense(2)(x))


def test_calling_a_layer_on_an_array_or_building_from_non_inputs_fails_clearly():
    with pytest.raises(ValueError, match=r"'dense' \(Dense\) was called on ArrayImpl: .* use layer.apply\(params, x\)"):
        Dense(2)(jnp.ones((1, 3)))
    x = Input(shape=(3,))
    h = Dense(2)(x)
    with pytest.raises(ValueError, match=r"Model inputs must come from jaxnn.Input\(...\), got the output of 'dense'"):
        Model(inputs=h, outputs=Dense(1)(h))
    with pytest.raises(ValueError, match="Model outputs must be a symbolic tensor .* got ArrayImpl"):
        Model(inputs=x, outputs=jnp.ones(3))
    with pytest.raises(ValueError, match="Input shape must be a tuple of positive ints"):
        Input(shape=(0, 3))


def test_inputs_of_the_wrong_shape_or_structure_name_the_input():
    model = two_in_two_out()
    _, params, _ = model.init(jax.random.key(0), ((None, 4), (None, 3)))
    with pytest.raises(ShapeError, match=r"input 'y' expects arrays of shape \(None, 3\), got \(2, 5\)"):
        model.apply(params, (jnp.ones((2, 4)), jnp.ones((2, 5))))
    with pytest.raises(ShapeError, match=r"input 'x' expects shape \(None, 4\), got \(None, 6\)"):
        model.init(jax.random.key(0), ((None, 6), (None, 3)))
    with pytest.raises(ValueError, match=r"has 2 inputs \(x, y\): give inputs as a list/tuple in that order or a dict "
                                         r"with those keys, got a dict with keys \['x', 'z'\]"):
        model.apply(params, {"x": jnp.ones((2, 4)), "z": jnp.ones((2, 3))})


def test_dict_inputs_are_keyed_like_the_dict():
    img, meta = Input(shape=(4,), name="pixels"), Input(shape=(2,), name="extra")
    model = Model(inputs={"image": img, "meta": meta}, outputs=Dense(1)(Concatenate()([img, meta])))
    _, params, _ = model.init(jax.random.key(0), {"image": (None, 4), "meta": (None, 2)})
    y, _ = model.apply(params, {"meta": jnp.ones((3, 2)), "image": jnp.zeros((3, 4))})
    k = np.asarray(params["dense"]["kernel"])
    np.testing.assert_allclose(y, np.full((3, 1), k[4:].sum()), rtol=1e-6)


def test_models_and_sequentials_nest_as_layers():
    x = Input(shape=(4,))
    inner = Model(x, Dense(3, "relu", name="inner_dense")(x), name="encoder")
    block = Sequential([Dense(3), Dense(2)], name="head")
    z = Input(shape=(4,), name="z")
    outer = Model(z, block(Add()([inner(z), Dense(3, name="side")(z)])), name="outer")
    _, params, _ = outer.init(jax.random.key(0), (None, 4))
    assert sorted(params) == ["encoder", "head", "side"] and list(params["encoder"]) == ["inner_dense"]
    xs = np.random.default_rng(0).normal(size=(5, 4))
    p = _np(params)
    dense = lambda q, v: v @ q["kernel"] + q["bias"]
    h = relu(dense(p["encoder"]["inner_dense"], xs)) + dense(p["side"], xs)
    want = dense(p["head"]["dense_1"], dense(p["head"]["dense"], h))
    np.testing.assert_allclose(outer.apply(params, xs.astype(np.float32))[0], want, rtol=1e-5, atol=1e-6)
    in_seq = Sequential([outer, Dense(1)])           # and a graph model inside a Sequential
    assert in_seq.init(jax.random.key(1), (None, 4))[0] == (None, 1)


def test_a_nested_model_with_two_outputs_gives_two_tensors():
    x = Input(shape=(3,))
    two = Model(x, [Dense(2, name="p")(x), Dense(4, name="q")(x)], name="two")
    z = Input(shape=(3,))
    p, q = two(z)
    assert (p.shape, q.shape) == ((None, 2), (None, 4))
    outer = Model(z, Concatenate()([p, q]))
    _, params, _ = outer.init(jax.random.key(0), (None, 3))
    y, _ = outer.apply(params, jnp.ones((1, 3)))
    inner, _ = two.apply(params["two"], jnp.ones((1, 3)))
    np.testing.assert_array_equal(y, jnp.concatenate(inner, axis=-1))


def test_dropout_in_a_graph_uses_a_key_per_call_and_only_in_training():
    x = Input(shape=(1000,))
    drop = Dropout(0.5)
    model = Model(x, [drop(x), drop(x)])
    _, params, _ = model.init(jax.random.key(0), (None, 1000))
    ones = jnp.ones((1, 1000))
    (a, b), _ = model.apply(params, ones, key=jax.random.key(1), train=True)
    assert 0.4 < float(jnp.mean(a == 0)) < 0.6 and not np.array_equal(a, b)   # two calls, two masks
    (a, b), _ = model.apply(params, ones)
    np.testing.assert_array_equal(a, ones)
    with pytest.raises(ValueError, match="dropout draws random numbers when train=True"):
        model.apply(params, ones, train=True)


def test_output_of_builds_a_feature_extractor_that_shares_params():
    x = Input(shape=(28, 28), name="image")
    features = Dense(16, "relu", name="features")(Flatten()(x))
    base = Model(x, Dense(10, name="logits")(features))
    _, params, _ = base.init(jax.random.key(0), (None, 28, 28))
    extractor = Model(x, base.output_of("features"))
    _, ext_params, _ = extractor.init(jax.random.key(1), (None, 28, 28))
    assert list(ext_params) == ["features"]
    images = jnp.ones((2, 28, 28))
    got, _ = extractor.apply({"features": params["features"]}, images)
    np.testing.assert_allclose(got, relu(np.ones((2, 784)) @ params["features"]["kernel"] + params["features"]["bias"]),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="no layer 'nope' in model functional; layers: image, flatten, features, logits"):
        base.output_of("nope")
    assert summary(base, (28, 28), print_fn=None) == base.summary(print_fn=None)   # one input: both ways work


def test_summary_shows_connections_and_counts_a_shared_layer_once():
    shared = Dense(3, name="shared")
    x1, x2 = Input(shape=(4,), name="x1"), Input(shape=(4,), name="x2")
    merged = Concatenate(name="join")([shared(x1), shared(x2)])
    model = Model([x1, x2], Dense(1, name="out")(merged), name="siamese")
    text = model.summary(print_fn=None)
    lines = text.splitlines()
    row = lambda name: next(line for line in lines if line.lstrip().startswith(name + " "))
    assert "Connected to" in lines[2]
    assert sum(line.lstrip().startswith("shared ") for line in lines) == 1
    assert row("shared").rstrip().endswith("x1[0][0], x2[0][0]") and " 15 " in row("shared")
    assert row("join").rstrip().endswith("shared[0][0], shared[1][0]") and "(None, 6)" in row("join")
    assert row("out").rstrip().endswith("join[0][0]") and " 7 " in row("out")
    assert "Total params: 22" in text and "Trainable params: 22" in text


def test_a_graph_model_trains_with_the_trainer():
    x = Input(shape=(2,))
    h = Dense(16, "relu")(x)
    model = Model(x, Dense(2, "softmax")(Add()([h, Dense(16, "relu")(h)])))
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(256, 2)).astype(np.float32)
    ys = (xs[:, 0] - 2 * xs[:, 1] > 0.5).astype(np.int32)
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", metrics=("accuracy",))
    state = trainer.init(jax.random.key(0), (2,))
    state, history = trainer.fit(state, xs, ys, epochs=15, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9


def test_state_is_keyed_by_layer_and_a_shared_stateful_layer_updates_in_call_order():
    norm = BatchNormalization(momentum=0.5, name="norm")
    a, b = Input(shape=(2,), name="a"), Input(shape=(2,), name="b")
    model = Model([a, b], [norm(a), norm(b)])
    _, params, state = model.init(jax.random.key(0), ((None, 2), (None, 2)))
    assert list(params) == ["norm"] and list(state) == ["norm"]
    xa, xb = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([[10.0, 0.0], [30.0, 0.0]])
    _, new_state = model.apply(params, (xa, xb), state=state, train=True)
    after_a = 0.5 * 0.0 + 0.5 * np.array([2.0, 3.0])           # moving = m * moving + (1 - m) * batch mean
    np.testing.assert_allclose(new_state["norm"]["moving_mean"], 0.5 * after_a + 0.5 * np.array([20.0, 0.0]))
    _, eval_state = model.apply(params, (xa, xb), state=new_state)
    np.testing.assert_array_equal(eval_state["norm"]["moving_mean"], new_state["norm"]["moving_mean"])
