"""Per-example gradients: equal to single-example jax.grad, DP-SGD's clipping and noise against a reference,
with weights, accumulation, check_finite; norm quantiles; refusals."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fit_helpers import blobs

from jaxnn import BatchNormalization, Dense, Dropout, Sequential, Trainer, losses, optimizers
from jaxnn.training.per_example import (PerExample, clipped_sum, example_norms, norm_histogram, norm_quantiles)
from jaxnn.training.steps import example_gradients

CLIP = 2.5
MODEL = Sequential([Dense(8, "tanh"), Dense(3, "softmax")])


def _trainer(model=MODEL, **kw):
    # SGD with learning rate 1: the update is minus the gradient the step used.
    return Trainer(model, loss="sparse_categorical_crossentropy", optimizer=optimizers.get("sgd", learning_rate=1.0),
                   **kw)


def _batch(n=16, seed=0):
    x, y = blobs(n, seed)
    return {"inputs": jnp.asarray(x), "targets": jnp.asarray(y)}


def _flat(tree):
    return np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(tree)])


def _used_gradient(trainer, batch, step=0):
    """The gradient the step applied (SGD, learning rate 1), flattened; and the step's stats."""
    state = trainer.init(0, (2,)).replace(step=jnp.int32(step))
    before = _flat(state.params)
    new, stats = trainer.train_step(state, batch)
    return before - _flat(new.params), stats


def _loop_gradients(params, batch):
    """The reference: one jax.grad per example, in a Python loop."""
    loss_fn = losses.get("sparse_categorical_crossentropy")
    grad = jax.jit(jax.grad(lambda p, x1, y1: loss_fn(y1, MODEL.apply(p, x1)[0])[0]))
    x, y = batch["inputs"], batch["targets"]
    return np.stack([_flat(grad(params, x[i:i + 1], y[i:i + 1])) for i in range(y.shape[0])])


def test_per_example_gradients_equal_a_loop_of_single_example_gradients():
    batch = _batch()
    params = _trainer().init(0, (2,)).params
    grads, _ = example_gradients(MODEL, losses.get("sparse_categorical_crossentropy"), params, {}, batch)
    vmapped = np.stack([_flat(jax.tree_util.tree_map(lambda g: g[i], grads)) for i in range(16)])
    np.testing.assert_allclose(vmapped, _loop_gradients(params, batch), atol=1e-6)
    np.testing.assert_allclose(example_norms(grads), np.linalg.norm(vmapped, axis=1), rtol=1e-6)


def test_clipping_bounds_each_contribution_and_sums_like_the_reference():
    batch = _batch()
    params = _trainer().init(0, (2,)).params
    reference = _loop_gradients(params, batch)
    norms = np.linalg.norm(reference, axis=1)
    assert (norms > CLIP).any() and (norms < CLIP).any()  # both sides of the clip are exercised
    clipped = reference * np.minimum(1.0, CLIP / norms)[:, None]
    grads, _ = example_gradients(MODEL, losses.get("sparse_categorical_crossentropy"), params, {}, batch)
    for i in range(16):  # each example's own contribution
        one = jax.tree_util.tree_map(lambda g: g[i:i + 1], grads)
        contribution = _flat(clipped_sum(one, example_norms(one), CLIP))
        assert np.linalg.norm(contribution) <= CLIP * (1 + 1e-6)
        np.testing.assert_allclose(contribution, clipped[i], atol=1e-6)
    # The step with noise 0 applies the clipped mean.
    used, _ = _used_gradient(_trainer(per_example=PerExample(clip_norm=CLIP)), batch)
    np.testing.assert_allclose(used, clipped.mean(axis=0), atol=1e-6)


def test_without_clipping_the_step_is_the_plain_step():
    batch = _batch()
    plain, plain_stats = _used_gradient(_trainer(), batch)
    per_example, stats = _used_gradient(_trainer(per_example=dict(quantiles=True)), batch)
    np.testing.assert_allclose(per_example, plain, atol=1e-6)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(stats[key]["total"], plain_stats[key]["total"], rtol=1e-6)
    assert float(stats["grad_norm"].sum()) == 16


def test_noise_has_std_noise_multiplier_times_clip_norm_and_comes_from_the_seed():
    batch, sigma = _batch(), 1.3
    clean, _ = _used_gradient(_trainer(per_example=dict(clip_norm=CLIP)), batch)
    trainer = _trainer(per_example=dict(clip_norm=CLIP, noise_multiplier=sigma))
    noised, _ = _used_gradient(trainer, batch)
    noise = (noised - clean) * 16  # noise is added to the clipped sum, before the division by the batch size
    assert noise.size == 51
    # 51 normal draws: their sample std lies within 35% of the true one with probability > 0.999.
    assert abs(noise.std() / (sigma * CLIP) - 1) < 0.35 and abs(noise.mean()) < 4 * sigma * CLIP / np.sqrt(51)
    again, _ = _used_gradient(trainer, batch)
    np.testing.assert_array_equal(again, noised)  # same seed and step: the same noise
    later, _ = _used_gradient(trainer, batch, step=1)
    assert not np.allclose(later, noised)  # another step: other noise


def test_noise_std_over_many_coordinates():
    """One step's noise on 1539 parameters: its std within 6% of sigma * C (a fixed key, 3 standard errors)."""
    model = Sequential([Dense(256, "tanh"), Dense(3, "softmax")])
    batch, sigma = _batch(), 0.8
    clean, _ = _used_gradient(_trainer(model, per_example=dict(clip_norm=CLIP)), batch)
    noised, _ = _used_gradient(_trainer(model, per_example=dict(clip_norm=CLIP, noise_multiplier=sigma)), batch)
    noise = (noised - clean) * 16
    assert noise.size == 1539
    assert abs(noise.std() / (sigma * CLIP) - 1) < 0.06  # 1539 draws: std's relative error ~ 1.8%


def test_noise_leaves_the_other_randomness_unchanged():
    model = Sequential([Dense(8, "tanh"), Dropout(0.5), Dense(3, "softmax")])
    batch = _batch()
    _, quiet = _used_gradient(_trainer(model, per_example=dict(clip_norm=CLIP)), batch)
    _, noisy = _used_gradient(_trainer(model, per_example=dict(clip_norm=CLIP, noise_multiplier=2.0)), batch)
    # The loss under Dropout depends on the step's dropout masks: the same masks with and without noise.
    assert float(quiet["loss"]["total"]) == float(noisy["loss"]["total"])


def test_zero_weight_examples_contribute_nothing():
    batch = _batch(12)
    padded = {"inputs": jnp.concatenate([batch["inputs"], 50 * jnp.ones((4, 2))]),
              "targets": jnp.concatenate([batch["targets"], jnp.zeros(4, jnp.int32)]),
              "weights": jnp.concatenate([jnp.ones(12), jnp.zeros(4)])}
    trainer = _trainer(per_example=dict(clip_norm=CLIP, noise_multiplier=1.0, quantiles=True))
    alone, _ = _used_gradient(trainer, batch)
    with_padding, stats = _used_gradient(trainer, padded)
    np.testing.assert_allclose(with_padding, alone, atol=1e-6)
    assert float(stats["grad_norm"].sum()) == 12


@pytest.mark.parametrize("kw", [dict(per_example=dict(clip_norm=CLIP, noise_multiplier=1.0)),
                                dict(per_example=dict(quantiles=True)), dict(accumulate_steps=2)])
def test_a_batch_of_no_weight_makes_no_update(kw):
    batch = {**_batch(8), "weights": jnp.zeros(8)}
    used, stats = _used_gradient(_trainer(**kw), batch)
    assert not used.any()  # as the plain step: finite, nothing applied (not 0/0)
    assert float(stats["loss"]["count"]) == 0


def test_quantiles_count_each_weighted_example_once():
    # Each norm already includes its example's weight (the gradient of the weighted loss).
    counts = np.asarray(norm_histogram(jnp.asarray([1.0, 2.0, 3.0]), jnp.asarray([10.0, 0.0, 0.5])))
    assert counts.sum() == 2 and counts[np.nonzero(counts)].tolist() == [1.0, 1.0]


def test_frozen_layers_count_in_no_example_norm():
    frozen = Sequential([Dense(8, "tanh", trainable=False), Dense(3, "softmax")])
    batch = _batch(16)
    trainer = _trainer(frozen, per_example=dict(clip_norm=0.1, quantiles=True))
    state = trainer.init(0, (2,))
    grads, _ = example_gradients(frozen, trainer.loss_fn, state.params, state.model_state, batch)
    trainable = {"dense_1": grads["dense_1"]}
    expected = np.asarray(norm_histogram(example_norms(trainable)))
    used, stats = _used_gradient(trainer, batch)
    np.testing.assert_array_equal(np.asarray(stats["grad_norm"]), expected)
    # Clipped by the trainable part's norm alone: the reference sum of the clipped trainable gradients.
    reference = clipped_sum(trainable, example_norms(trainable), 0.1)
    np.testing.assert_allclose(used, np.concatenate([np.zeros(2 * 8 + 8), _flat(reference) / 16]), atol=1e-7)


def test_accumulation_adds_the_clipped_sums_and_noises_once():
    batch = _batch(16)
    options = dict(clip_norm=CLIP, noise_multiplier=1.0)
    whole, _ = _used_gradient(_trainer(per_example=options), batch)
    accumulated, _ = _used_gradient(_trainer(per_example=options, accumulate_steps=4), batch)
    np.testing.assert_allclose(accumulated, whole, atol=1e-6)


def test_check_finite_stops_on_a_non_finite_example():
    batch = _batch()
    batch["inputs"] = batch["inputs"].at[3, 0].set(jnp.inf)
    trainer = _trainer(per_example=dict(clip_norm=CLIP, noise_multiplier=1.0), check_finite=True)
    used, stats = _used_gradient(trainer, batch)
    assert not used.any()  # no update
    assert all(jax.tree_util.tree_leaves(stats["nonfinite"]["grads"]))


def test_quantiles_from_the_histogram_match_numpy_within_a_bin():
    norms = np.exp(np.random.default_rng(0).normal(0, 2, 5000)).astype(np.float32)
    counts = norm_histogram(jnp.asarray(norms[:3000])) + norm_histogram(jnp.asarray(norms[3000:]))
    found = norm_quantiles(counts)
    expected = {"grad_norm_p50": np.quantile(norms, 0.5), "grad_norm_p90": np.quantile(norms, 0.9),
                "grad_norm_p99": np.quantile(norms, 0.99), "grad_norm_max": norms.max()}
    for key, value in expected.items():
        assert abs(np.log(found[key] / value)) < np.log(10) * 12 / 1024  # one bin: 2.7%
    assert np.isnan(norm_quantiles(np.zeros(1024))["grad_norm_p50"])


def test_fit_logs_the_quantiles_each_epoch():
    x, y = blobs(320)
    trainer = _trainer(per_example=dict(quantiles=True))
    _, history = trainer.fit(trainer.init(0, (2,)), x, y, epochs=2, batch_size=32, validation_split=0.2, verbose=0)
    keys = ["grad_norm_p50", "grad_norm_p90", "grad_norm_p99", "grad_norm_max"]
    assert set(keys) <= set(history.history) and "val_grad_norm_p50" not in history.history
    for epoch in range(2):
        values = [history.history[k][epoch] for k in keys]
        assert values == sorted(values) and 0 < values[0] < np.inf


def test_batch_normalization_is_refused_in_one_line():
    model = Sequential([Dense(8), BatchNormalization(), Dense(3, "softmax")])
    with pytest.raises(ValueError, match=r"^per-example gradients do not work with BatchNormalization \(state "
                                         r"\['batch_normalization'\]\['moving_mean'\]\).*batch's") as e:
        _trainer(model, per_example=dict(clip_norm=1.0)).init(0, (2,))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("options,match", [
    (dict(clip_norm=-1.0), "per_example.clip_norm must be a finite number >= 0, got -1.0"),
    (dict(clip_norm=float("inf")), "per_example.clip_norm must be a finite number >= 0, got inf"),
    (dict(clip_norm=1.0, noise_multiplier=float("inf")), "per_example.noise_multiplier must be a finite number"),
    (dict(noise_multiplier=1.0), "per_example.noise_multiplier 1.0 needs per_example.clip_norm > 0"),
    (dict(clip_norm=1.0, quantiles=1), "per_example.quantiles must be True or False, got 1"),
    (dict(), "per_example needs clip_norm > 0 or quantiles=True"),
    (dict(clip_norm=1.0, clip=2), "unknown field per_example.clip; allowed: clip_norm, noise_multiplier, quantiles"),
    ((1.0,), r"per_example must be None, a PerExample or a dict of its fields, got \(1.0,\)"),
])
def test_bad_options_raise_one_line(options, match):
    with pytest.raises(ValueError, match=match):
        _trainer(per_example=options)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_clips_the_true_gradients(policy):
    batch, options = _batch(), dict(clip_norm=CLIP, quantiles=True)
    exact, exact_stats = _used_gradient(_trainer(per_example=options), batch)
    mixed, stats = _used_gradient(_trainer(per_example=options, policy=policy), batch)
    np.testing.assert_allclose(mixed, exact, atol=0.02 * np.abs(exact).max())
    np.testing.assert_array_equal(stats["grad_norm"].sum(), exact_stats["grad_norm"].sum())
