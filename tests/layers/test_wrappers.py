"""Custom layers (function pairs, a Layer subclass) and Flax linen/nnx modules, each against its own reference."""
import dataclasses

import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.example_libraries import stax

from jaxnn import Dense, Input, Model, Sequential, summary
from jaxnn.layers import FlaxModule, FlaxNNX, FunctionLayer, Layer, ShapeError
from jaxnn.layers import as_shape


def init_scale(key, input_shape):
    return input_shape, {"scale": jnp.ones(input_shape[-1:])}


def apply_scale(params, x):
    return x * params["scale"]


def test_function_layer_readme_example_in_a_sequential():
    scale = FunctionLayer(init_scale, apply_scale, name="scale")
    model = Sequential([Dense(4, "relu"), scale, Dense(1)])
    _, params, state = model.init(jax.random.key(0), (None, 3))
    assert sorted(params) == ["dense", "dense_1", "scale"] and state == {}
    params["scale"]["scale"] = jnp.array([1.0, 2.0, 3.0, 4.0])
    x = np.array([[1.0, -1.0, 2.0]], np.float32)
    p = jax.tree_util.tree_map(np.asarray, params)
    hidden = np.maximum(x @ p["dense"]["kernel"] + p["dense"]["bias"], 0) * p["scale"]["scale"]
    np.testing.assert_allclose(model.apply(params, x)[0], hidden @ p["dense_1"]["kernel"] + p["dense_1"]["bias"],
                               rtol=1e-6)


def test_function_layer_with_state_key_and_train():
    def init_fn(key, input_shape):
        return input_shape, {}, {"calls": jnp.zeros(())}

    def apply_fn(params, x, *, state, key, train):
        noise = jax.random.normal(key, x.shape) if train else 0.0
        return x + noise, {"calls": state["calls"] + 1}

    layer = FunctionLayer(init_fn, apply_fn, name="noisy")
    _, params, state = layer.init(jax.random.key(0), (None, 2))
    key = jax.random.key(1)
    y, new_state = layer.apply(params, jnp.zeros((3, 2)), state=state, key=key, train=True)
    np.testing.assert_array_equal(y, jax.random.normal(jax.random.key(1), (3, 2)))
    assert float(new_state["calls"]) == 1.0
    assert layer.apply(params, jnp.zeros((3, 2)), state=new_state)[0].sum() == 0.0


def test_stax_pairs_work_as_function_layers():
    init_fun, apply_fun = stax.Dense(3)
    layer = FunctionLayer(init_fun, apply_fun, name="stax_dense")
    out_shape, params, state = layer.init(jax.random.key(0), (None, 5))
    assert out_shape == (None, 3) and state == {}
    x = jnp.ones((2, 5))
    np.testing.assert_array_equal(layer.apply(params, x)[0], apply_fun(params, x))


def test_function_layer_errors():
    with pytest.raises(ValueError, match="FunctionLayer apply_fn must be a function, got 3"):
        FunctionLayer(init_scale, 3)
    with pytest.raises(ValueError, match=r"init_fn must return \(output_shape, params\) or .* got dict"):
        FunctionLayer(lambda key, shape: {}, apply_scale).init(jax.random.key(0), (None, 2))


@dataclasses.dataclass(frozen=True)
class Polynomial(Layer):
    """y = sum_k coeffs[k] * x**k per feature: a user's own frozen-dataclass layer."""

    degree: int = 2

    def __post_init__(self):
        if not isinstance(self.degree, int) or self.degree < 1:
            raise ValueError(f"Polynomial degree must be an int >= 1, got {self.degree!r}")

    def init(self, key, input_shape):
        input_shape = as_shape(input_shape)
        return input_shape, {"coeffs": jax.random.normal(key, (self.degree + 1, input_shape[-1]))}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        powers = jnp.stack([x ** k for k in range(self.degree + 1)])
        return jnp.sum(powers * params["coeffs"][:, None, :], axis=0), {}


def test_a_layer_subclass_works_in_graphs_and_summary():
    x = Input(shape=(2,), name="x")
    model = Model(x, Dense(1, name="out")(Polynomial(3)(x)))
    _, params, _ = model.init(jax.random.key(0), (None, 2))
    c = np.asarray(params["polynomial"]["coeffs"])
    xs = np.array([[2.0, -1.0]], np.float32)
    poly = sum(c[k] * xs ** k for k in range(4))
    np.testing.assert_allclose(model.apply(params, xs)[0], poly @ params["out"]["kernel"] + params["out"]["bias"],
                               rtol=1e-5)
    assert " 8 " in next(line for line in model.summary(print_fn=None).splitlines() if "polynomial" in line)
    assert hash(Polynomial(3)) == hash(Polynomial(3))
    with pytest.raises(ValueError, match="Polynomial degree must be an int >= 1, got 0"):
        Polynomial(0)


class MLP(nn.Module):
    """Dense -> BatchNorm -> Dropout -> Dense: params, batch_stats and a dropout rng."""

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(8)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(2)(nn.relu(x))


def test_flax_dense_params_and_outputs_are_the_modules_own():
    module = nn.Dense(4)
    layer = FlaxModule(module)
    out_shape, params, state = layer.init(jax.random.key(0), (None, 3))
    want = module.init({"params": jax.random.key(0)}, jnp.zeros((1, 3)))
    assert out_shape == (None, 4) and state == {}
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(want["params"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, want["params"])
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(layer.apply(params, x)[0], module.apply(want, x))


def test_flax_module_with_batch_stats_and_dropout_matches_module_apply():
    module = MLP()
    layer = FlaxModule(module)
    assert layer.mode_keyword == "train" and layer.default_name == "mlp"
    _, params, state = layer.init(jax.random.key(0), (None, 3))
    variables = module.init({"params": jax.random.key(0)}, jnp.zeros((1, 3)), train=False)
    assert list(state) == ["batch_stats"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, (params, state),
                           (variables["params"], {"batch_stats": variables["batch_stats"]}))
    x = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    y, new_state = layer.apply(params, x, state=state, key=jax.random.key(7), train=True)
    dropout_key, = jax.random.split(jax.random.key(7), 1)
    want_y, want_updates = module.apply(variables, x, train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"])
    np.testing.assert_array_equal(y, want_y)
    jax.tree_util.tree_map(np.testing.assert_array_equal, new_state, dict(want_updates))
    assert not np.array_equal(new_state["batch_stats"]["BatchNorm_0"]["mean"], state["batch_stats"]["BatchNorm_0"]["mean"])
    y_eval, same_state = layer.apply(params, x, state=new_state)
    np.testing.assert_array_equal(y_eval, module.apply({"params": params, **new_state}, x, train=False))
    assert same_state is new_state


@pytest.mark.parametrize("module,keyword,train,passed", [
    (nn.Dropout(0.5), "deterministic", True, False),
    (nn.BatchNorm(), "use_running_average", False, True),
    (MLP(), "train", True, True),
    (nn.Dense(2), None, True, None),
])
def test_flax_mode_keyword_is_found_from_the_signature(module, keyword, train, passed):
    layer = FlaxModule(module)
    assert layer.mode_keyword == keyword
    assert layer._mode(train) == ({} if keyword is None else {keyword: passed})


def test_flax_module_in_a_graph_shows_its_params_in_summary():
    x = Input(shape=(3,), name="x")
    model = Model(x, Dense(1)(FlaxModule(MLP(), name="body")(x)))
    text = model.summary(print_fn=None)
    body = next(line for line in text.splitlines() if line.lstrip().startswith("body "))
    # Dense(3->8) 32 + BatchNorm scale/bias 16 (+ 16 batch stats) + Dense(8->2) 18 = 82
    assert "body (FlaxModule)" in body and " 82 " in body and "x[0][0]" in body
    assert "Non-trainable params: 16" in text
    assert summary(model, (3,), print_fn=None) == text


def test_flax_module_errors():
    with pytest.raises(ValueError, match="FlaxModule module must be a flax.linen Module, got Dense"):
        FlaxModule(Dense(3))
    with pytest.raises(ValueError, match=r"train_arg 'training' is not a keyword of MLP.__call__; allowed: x, train"):
        FlaxModule(MLP(), train_arg="training")
    with pytest.raises(ShapeError, match=r"FlaxModule needs known non-batch dimensions, got input shape \(None, None\)"):
        FlaxModule(nn.Dense(2)).init(jax.random.key(0), (None, None))


class NNXNet(nnx.Module):
    """Linear -> BatchNorm -> Dropout -> Linear, as an nnx module."""

    def __init__(self, rngs):
        self.l1 = nnx.Linear(3, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.l2 = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(nnx.relu(self.bn(self.l1(x)))))


def test_flax_nnx_matches_the_module_in_both_modes():
    layer = FlaxNNX(NNXNet, name="net")
    out_shape, params, state = layer.init(jax.random.key(0), (None, 3))
    reference = NNXNet(nnx.Rngs(jax.random.key(0)))
    assert out_shape == (None, 2)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, nnx.to_pure_dict(nnx.state(reference, nnx.Param)))
    assert jax.tree_util.tree_map(np.shape, state) == {"bn": {"mean": (8,), "var": (8,)}}   # rng streams left out
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    reference.eval()
    y, same = layer.apply(params, x, state=state)
    np.testing.assert_array_equal(y, reference(x))
    assert same is state
    y, new_state = layer.apply(params, x, state=state, key=jax.random.key(1), train=True)
    reference.train()
    reference.drop.rngs.key.set_value(jax.random.split(jax.random.key(1), 1)[0])   # the layer's stream seed
    np.testing.assert_array_equal(y, reference(x))
    np.testing.assert_array_equal(new_state["bn"]["mean"], reference.bn.mean[...])
    with pytest.raises(ValueError, match="net draws random numbers when train=True"):
        layer.apply(params, x, state=state, train=True)


def test_flax_nnx_trains_inside_a_jitted_graph():
    x = Input(shape=(3,), name="x")
    model = Model(x, Dense(1)(FlaxNNX(NNXNet, name="net")(x)))
    _, params, state = model.init(jax.random.key(0), (None, 3))
    assert " 82 " in next(line for line in model.summary(print_fn=None).splitlines() if line.lstrip().startswith("net "))
    step = jax.jit(lambda p, s, k: model.apply(p, jnp.ones((5, 3)), state=s, key=k, train=True))
    y, new_state = step(params, state, jax.random.key(1))
    assert y.shape == (5, 1) and set(new_state) == {"net"}
