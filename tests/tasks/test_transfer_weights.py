"""Transfer learning: params through a checkpoint, loading by name, freezing, fine-tuning."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from jaxnn import Dense, Flatten, Input, Model, Sequential, Trainer
from jaxnn.tasks.transfer_weights import (fine_tune_optimizer, freeze, frozen_labels, load_by_name, load_params,
                                          param_paths, save_params)


def test_jaxnn_transfer_is_this_module():
    """README documents `jaxnn.transfer.load_by_name` and `jaxnn.transfer.freeze`."""
    assert (jaxnn.transfer.load_by_name, jaxnn.transfer.freeze) == (load_by_name, freeze)


def base_and_new():
    """A trained-base stand-in and a new model that reuses its first two layers under the same names."""
    base = Sequential([Flatten(), Dense(16, "relu", name="features"), Dense(8, "relu", name="mid"), Dense(10, name="head")])
    x = Input(shape=(4, 4))
    h = Dense(8, "relu", name="mid")(Dense(16, "relu", name="features")(Flatten()(x)))
    new = Model(x, Dense(3, "softmax", name="new_head")(h))
    _, base_params, _ = base.init(jax.random.key(0), (None, 4, 4))
    _, new_params, _ = new.init(jax.random.key(1), (None, 4, 4))
    return base, base_params, new, new_params


def test_params_survive_a_checkpoint_bit_for_bit(tmp_path):
    _, params, _, _ = base_and_new()
    save_params(tmp_path / "params", params)
    loaded = load_params(tmp_path / "params")
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)


def test_load_by_name_copies_the_named_layers_only():
    _, base_params, _, new_params = base_and_new()
    loaded = load_by_name(new_params, base_params)               # all names in common: features, mid
    for name in ("features", "mid"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, loaded[name], base_params[name])
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded["new_head"], new_params["new_head"])
    assert not np.array_equal(new_params["features"]["kernel"], base_params["features"]["kernel"])   # input untouched
    only = load_by_name(new_params, base_params, layers=["features"])
    np.testing.assert_array_equal(only["features"]["kernel"], base_params["features"]["kernel"])
    np.testing.assert_array_equal(only["mid"]["kernel"], new_params["mid"]["kernel"])


def test_load_by_name_reaches_into_nested_models_by_path():
    source = {"block": {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}}
    target = {"block": {"dense": {"kernel": jnp.zeros((2, 3)), "bias": jnp.ones(3)}}, "out": {"bias": jnp.ones(1)}}
    loaded = load_by_name(target, source, layers=["block/dense"])
    np.testing.assert_array_equal(loaded["block"]["dense"]["kernel"], np.ones((2, 3)))
    assert loaded["out"] is target["out"]


def test_load_by_name_lists_every_mismatch():
    target = {"a": {"kernel": jnp.zeros((4, 3)), "bias": jnp.zeros(3)}, "b": {"kernel": jnp.zeros((2, 2))},
              "c": {"kernel": jnp.zeros(1)}}
    source = {"a": {"kernel": jnp.zeros((5, 3)), "bias": jnp.zeros(3)}, "b": {"gamma": jnp.zeros(2)}}
    with pytest.raises(ValueError) as info:
        load_by_name(target, source, layers=["a", "b", "c"])
    assert str(info.value).splitlines() == [
        "cannot load params by name, 4 mismatch(es):",
        "  a/kernel: target shape (4, 3) vs source shape (5, 3)",
        "  b/kernel: in the target (2, 2) but not in the source",
        "  b/gamma: in the source (2,) but not in the target",
        "  c: not in the source (its layers: a, b)",
    ]
    with pytest.raises(ValueError, match="no layer names in common: the target has c, the source a, b"):
        load_by_name({"c": target["c"]}, source)


@pytest.mark.parametrize("patterns,frozen", [
    (["features"], {"features/kernel", "features/bias"}),
    (["*/bias"], {"features/bias", "mid/bias", "new_head/bias"}),
    (["feat*", "mid/kernel"], {"features/kernel", "features/bias", "mid/kernel"}),
])
def test_freeze_patterns_pick_layers_and_paths(patterns, frozen):
    _, _, _, params = base_and_new()
    labels = param_paths(frozen_labels(params, patterns))
    assert {p for p, label in labels.items() if label == "frozen"} == frozen
    assert set(labels) == set(param_paths(params))


def test_a_pattern_that_matches_nothing_is_an_error():
    _, _, _, params = base_and_new()
    with pytest.raises(ValueError, match=r"freeze pattern\(s\) 'featurs' match no parameter; parameters: features/bias"):
        frozen_labels(params, ["featurs", "mid"])


def test_frozen_layers_stay_bit_identical_while_training():
    _, base_params, new, new_params = base_and_new()
    params = load_by_name(new_params, base_params)
    new_head = np.asarray(new_params["new_head"]["kernel"])      # the train step donates (deletes) its input state
    tx = freeze(optax.adam(1e-2), params, ["features", "mid"])
    trainer = Trainer(new, loss="sparse_categorical_crossentropy", optimizer=tx, metrics=())
    state = trainer.init(jax.random.key(2), (4, 4)).replace(params=params)
    state = state.replace(opt_state=tx.init(params))
    rng = np.random.default_rng(0)
    batch = {"inputs": jnp.asarray(rng.normal(size=(32, 4, 4)), jnp.float32),
             "targets": jnp.asarray(rng.integers(0, 3, 32))}
    losses = []
    for _ in range(5):
        state, stats = trainer.train_step(state, batch)
        losses.append(float(stats["loss"]["total"]))
    for name in ("features", "mid"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, state.params[name], base_params[name])
    assert not np.array_equal(state.params["new_head"]["kernel"], new_head)
    assert losses[-1] < losses[0]


def test_fine_tune_optimizer_steps_at_the_low_learning_rate():
    params = {"base": {"kernel": jnp.ones((2, 2))}, "head": {"kernel": jnp.ones((2, 1))}}
    grads = jax.tree_util.tree_map(lambda a: jnp.full(a.shape, 3.0), params)
    tx = fine_tune_optimizer(params, learning_rate=1e-5, frozen=["head"])
    updates, _ = tx.update(grads, tx.init(params), params)
    # Adam's first step is -lr * g / (|g| + eps): -1e-5 per entry (up to float32 bias-correction rounding)
    np.testing.assert_allclose(updates["base"]["kernel"], -1e-5, rtol=1e-4)
    np.testing.assert_array_equal(updates["head"]["kernel"], 0.0)
    sgd = fine_tune_optimizer(params, optimizer="sgd", learning_rate=1e-3)
    plain, _ = sgd.update(grads, sgd.init(params), params)
    np.testing.assert_allclose(plain["head"]["kernel"], -3e-3, rtol=1e-6)
