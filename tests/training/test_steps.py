"""Train-step options: gradient accumulation equals the whole batch, mixed precision keeps float32 params and
losses, float16 loss scaling, and the in-step finite check's flags."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fit_helpers import blobs

from jaxnn import Dense, Sequential, Trainer, optimizers, summary
from jaxnn.training.precision import INITIAL_LOSS_SCALE, LOSS_SCALE_GROWTH_STEPS, LossScale, get_policy


def _trainer(**kw):
    model = Sequential([Dense(16, "tanh"), Dense(3, "softmax")])
    return Trainer(model, loss="sparse_categorical_crossentropy", optimizer=optimizers.get("sgd", learning_rate=0.1),
                   **kw)


@pytest.mark.parametrize("with_weights", [False, True])
def test_accumulating_micro_batches_gives_the_whole_batch_gradient(with_weights):
    x, y = blobs(32)
    batch = {"inputs": jnp.asarray(x), "targets": jnp.asarray(y)}
    if with_weights:  # padding-like zero weights, unevenly spread over the micro-batches
        batch["weights"] = jnp.asarray((np.arange(32) % 5 != 0) * np.linspace(0.5, 1.5, 32), jnp.float32)
    states, stats = [], []
    for k in (1, 4):
        trainer = _trainer(accumulate_steps=k)
        state, st = trainer.train_step(trainer.init(0, (2,)), batch)
        states.append(state)
        stats.append(st)
    for a, b in zip(jax.tree_util.tree_leaves(states[0].params), jax.tree_util.tree_leaves(states[1].params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(stats[0][key]["total"], stats[1][key]["total"], rtol=1e-5)
        np.testing.assert_allclose(stats[0][key]["count"], stats[1][key]["count"])


def test_accumulation_needs_a_divisible_batch():
    x, y = blobs(64)
    with pytest.raises(ValueError, match="batch_size 30 must be a multiple of accumulate_steps 4"):
        _trainer(accumulate_steps=4).fit(_trainer().init(0, (2,)), x, y, batch_size=30, verbose=0)
    with pytest.raises(ValueError, match="accumulate_steps must be a positive integer, got 0"):
        _trainer(accumulate_steps=0)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_learns_with_float32_params_and_losses(policy):
    x, y = blobs(256)
    trainer = _trainer(policy=policy)
    state = trainer.init(0, (2,))
    preds = trainer.predict(state, x[:4])
    assert preds.dtype == np.float32
    state, history = trainer.fit(state, x, y, epochs=8, batch_size=32, verbose=0)
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(state.params))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert trainer.evaluate(state, x, y)["accuracy"] > 0.85
    # The forward pass really runs in the compute dtype: its jaxpr holds a dot in that dtype.
    jaxpr = jax.make_jaxpr(lambda s: trainer._make_eval_step()(s.params, s.model_state,
                                                                 {"inputs": x[:4], "targets": y[:4]}))(state)
    dtype = get_policy(policy).compute_dtype
    assert any(e.primitive.name == "dot_general" and e.outvars[0].aval.dtype == dtype for e in jaxpr.eqns)
    assert (state.loss_scale is not None) == (policy == "mixed_float16")


def test_summary_names_the_policy():
    text = summary(Sequential([Dense(3)]), (2,), print_fn=None, policy=get_policy("mixed_bfloat16"))
    assert text.splitlines()[-1] == ("Precision policy: mixed_bfloat16 (compute bfloat16, params float32, "
                                     "loss float32)")
    with pytest.raises(ValueError, match="precision policy must be one of float32, mixed_bfloat16, mixed_float16"):
        get_policy("half")


def test_loss_scale_halves_on_overflow_and_doubles_after_a_run_of_good_steps():
    scale = LossScale.create()
    assert float(scale.scale) == INITIAL_LOSS_SCALE
    scale = scale.adjust(jnp.bool_(False))
    assert float(scale.scale) == INITIAL_LOSS_SCALE / 2 and int(scale.good_steps) == 0
    for _ in range(LOSS_SCALE_GROWTH_STEPS - 1):
        scale = scale.adjust(jnp.bool_(True))
    assert float(scale.scale) == INITIAL_LOSS_SCALE / 2
    scale = scale.adjust(jnp.bool_(True))
    assert float(scale.scale) == INITIAL_LOSS_SCALE and int(scale.good_steps) == 0
    assert float(LossScale(jnp.float32(1.0), jnp.int32(0)).adjust(jnp.bool_(False)).scale) == 1.0


def test_float16_overflow_skips_the_update_and_lowers_the_scale():
    x, y = blobs(32)
    trainer = _trainer(policy="mixed_float16")
    state = trainer.init(0, (2,))
    before = jax.tree_util.tree_map(np.asarray, state.params)
    huge = {"inputs": jnp.asarray(x * 3e4), "targets": jnp.asarray(y)}  # activations overflow float16
    state, _ = trainer.train_step(state, huge)
    assert float(state.loss_scale.scale) == INITIAL_LOSS_SCALE / 2
    jax.tree_util.tree_map(np.testing.assert_array_equal, before, jax.tree_util.tree_map(np.asarray, state.params))


def test_the_finite_check_flags_the_loss_and_each_gradient_array():
    x, y = blobs(160)
    x[101, 0] = np.nan
    trainer = _trainer(check_finite=True)
    _, stats = trainer.train_step(trainer.init(0, (2,)), {"inputs": jnp.asarray(x[96:128]),
                                                          "targets": jnp.asarray(y[96:128])})
    assert bool(stats["nonfinite"]["loss"]) and bool(stats["nonfinite"]["grads"]["dense_1"]["kernel"])
