"""Optimizers and schedules against their formulas: decays, warm-up + cosine, one-cycle, global-norm clipping,
AdamW's decoupled decay, the learning rate kept in the optimizer state, and bad options."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnn import optimizers


def _lr_after(tx, steps, params=None):
    """Learning rates used by the first `steps` updates (read back from the optimizer state)."""
    params = params or {"w": jnp.ones(3)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    rates = []
    for _ in range(steps):
        _, state = update(params, state, params)
        rates.append(float(optimizers.learning_rate(state)))
    return np.array(rates)


def _warmup_cosine(step, peak, warmup, total):
    if step < warmup:
        return peak * step / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


@pytest.mark.parametrize("schedule,expected", [
    ({"name": "constant"}, lambda t: 0.1),
    ({"name": "exponential_decay", "decay_steps": 4, "decay_rate": 0.5}, lambda t: 0.1 * 0.5 ** (t / 4)),
    ({"name": "step_decay", "decay_steps": 4, "decay_rate": 0.5}, lambda t: 0.1 * 0.5 ** (t // 4)),
    ({"name": "warmup_cosine", "warmup_steps": 3}, lambda t: _warmup_cosine(t, 0.1, 3, 12)),
])
def test_schedules_follow_their_formulas(schedule, expected):
    tx = optimizers.get("sgd", learning_rate=0.1, schedule_options=schedule, total_steps=12)
    np.testing.assert_allclose(_lr_after(tx, 12), [expected(t) for t in range(12)], rtol=1e-5, atol=1e-7)


def test_one_cycle_rises_to_the_peak_then_falls_to_peak_over_both_factors():
    tx = optimizers.get("adam", learning_rate=0.1, schedule_options={"name": "one_cycle"}, total_steps=101)
    rates = _lr_after(tx, 101)
    assert rates[0] == pytest.approx(0.1 / 25, rel=1e-5)
    assert rates.argmax() == 30 and rates.max() == pytest.approx(0.1, rel=1e-5)
    end = 0.1 / 25 / 1e4  # reached at step 101; step 100 is one step short on the cosine
    assert rates[-1] == pytest.approx(end + (0.1 - end) * (1 + math.cos(math.pi * 70 / 71)) / 2, rel=1e-3)
    assert np.all(np.diff(rates[:31]) > 0) and np.all(np.diff(rates[30:]) < 0)


def test_global_norm_clipping_rescales_only_large_gradients():
    tx = optimizers.get("sgd", learning_rate=1.0, global_clipnorm=1.0)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
    state = tx.init(params)
    big = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([4.0])}  # global norm 5
    updates, state = tx.update(big, state, params)
    np.testing.assert_allclose(updates["a"], [-0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(updates["b"], [-0.8], rtol=1e-6)
    small = {"a": jnp.array([0.3, 0.0]), "b": jnp.array([0.4])}
    updates, _ = tx.update(small, state, params)
    np.testing.assert_allclose(updates["b"], [-0.4], rtol=1e-6)


def test_adamw_step_matches_the_decoupled_formula():
    lr, wd, b1, b2, eps = 0.01, 0.1, 0.9, 0.999, 1e-7
    tx = optimizers.get("adamw", learning_rate=lr, weight_decay=wd)
    p = jnp.array([1.0, -2.0, 0.5])
    g = jnp.array([0.3, 0.1, -0.2])
    state = tx.init(p)
    p_np, m, v = np.asarray(p, np.float64), np.zeros(3), np.zeros(3)
    for t in (1, 2):
        updates, state = tx.update(g, state, p)
        p = p + updates
        m = b1 * m + (1 - b1) * np.asarray(g)
        v = b2 * v + (1 - b2) * np.asarray(g) ** 2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p_np = p_np - lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * p_np)
    np.testing.assert_allclose(p, p_np, rtol=1e-5)


def test_the_learning_rate_can_be_set_when_constant_but_not_under_a_schedule():
    tx = optimizers.get("sgd", learning_rate=0.5)
    params = {"w": jnp.ones(2)}
    state = optimizers.set_learning_rate(tx.init(params), 0.25)
    updates, state = tx.update({"w": jnp.ones(2)}, state, params)
    np.testing.assert_allclose(updates["w"], [-0.25, -0.25])
    assert float(optimizers.learning_rate(state)) == 0.25
    scheduled = optimizers.get("sgd", schedule_options={"name": "exponential_decay", "decay_steps": 2})
    with pytest.raises(ValueError, match="follows a schedule"):
        optimizers.set_learning_rate(scheduled.init(params), 0.1)
    import optax

    plain = optax.sgd(0.1)
    assert optimizers.learning_rate(plain.init(params)) is None
    with pytest.raises(ValueError, match="does not expose its learning rate"):
        optimizers.set_learning_rate(plain.init(params), 0.1)


@pytest.mark.parametrize("kwargs,match", [
    (dict(schedule_options={"name": "cosine2"}), "unknown schedule 'cosine2'; known: constant, exponential_decay"),
    (dict(schedule_options={"name": "warmup_cosine", "warmup_step": 3}),
     "unknown option.* warmup_step for schedule 'warmup_cosine'; allowed: warmup_steps, decay_steps"),
    (dict(schedule_options={"name": "warmup_cosine", "warmup_steps": 20}, total_steps=10),
     r"warmup_steps must be in \[0, decay_steps=10 \(the whole run's steps\)\), got 20"),
    (dict(schedule_options={"name": "exponential_decay", "decay_steps": -1}),
     "decay_steps must be a non-negative integer, got -1"),
    (dict(global_clipnorm=0.0), "global_clipnorm must be positive, got 0.0"),
    (dict(weight_decay=0.1), "unknown option.* weight_decay for optimizer 'adam'"),
])
def test_bad_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.get("adam", **kwargs)


# -- each named optimizer against Keras's update rule, two steps, Keras's defaults --------------------------------
def _keras_sgd(lr=0.01, momentum=0.0, nesterov=False):
    def step(p, g, s):
        v = momentum * s.get("v", 0.0) - lr * g
        return p + (momentum * v - lr * g if nesterov else v), {"v": v}
    return step


def _keras_rmsprop(lr=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    def step(p, g, s):
        v = rho * s.get("v", 0.0) + (1 - rho) * g ** 2
        avg = rho * s.get("avg", 0.0) + (1 - rho) * g
        increment = lr * g / np.sqrt((v - avg ** 2 if centered else v) + epsilon)  # Keras: epsilon inside the root
        mom = momentum * s.get("mom", 0.0) + increment
        return p - (mom if momentum else increment), {"v": v, "avg": avg, "mom": mom}
    return step


def _adam(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, weight_decay=0.0):
    """Kingma & Ba's Algorithm 1 (epsilon added to the root of the bias-corrected v); AMSGrad divides by the
    running maximum of the bias-corrected v (optax's form; Keras takes the maximum before the correction);
    AdamW subtracts lr * weight_decay * p (decoupled decay)."""
    def step(p, g, s):
        t = s.get("t", 0) + 1
        m = beta_1 * s.get("m", 0.0) + (1 - beta_1) * g
        v = beta_2 * s.get("v", 0.0) + (1 - beta_2) * g ** 2
        m_hat, v_hat = m / (1 - beta_1 ** t), v / (1 - beta_2 ** t)
        v_max = np.maximum(s.get("v_max", 0.0), v_hat) if amsgrad else v_hat
        return p - lr * (m_hat / (np.sqrt(v_max) + epsilon) + weight_decay * p), {"t": t, "m": m, "v": v,
                                                                                  "v_max": v_max}
    return step


@pytest.mark.parametrize("name,options,reference", [
    ("sgd", {}, _keras_sgd()),
    ("sgd", {"momentum": 0.9}, _keras_sgd(momentum=0.9)),
    ("sgd", {"momentum": 0.9, "nesterov": True}, _keras_sgd(momentum=0.9, nesterov=True)),
    ("rmsprop", {}, _keras_rmsprop()),
    ("rmsprop", {"momentum": 0.5}, _keras_rmsprop(momentum=0.5)),
    ("rmsprop", {"centered": True}, _keras_rmsprop(centered=True)),
    ("adam", {}, _adam()),
    ("adam", {"amsgrad": True}, _adam(amsgrad=True)),
    ("adamw", {}, _adam(weight_decay=0.004)),
])
def test_named_optimizers_follow_kerass_update_rule_with_its_defaults(name, options, reference):
    p0 = np.array([0.5, -1.0, 2.0, 1e-3])
    grads = [np.array([0.1, -0.2, 3.0, 1e-4]), np.array([-0.3, 0.05, 0.01, -2e-4])]
    tx = optimizers.get(name, **options)
    params = jnp.asarray(p0, jnp.float32)
    state = tx.init(params)
    ref_state = {}
    for g in grads:
        updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
        before = np.asarray(params, np.float64)
        expected, ref_state = reference(before, g, ref_state)
        # The update itself, not the new parameters: a weight decay of lr * 1e-4 * p is below their rounding.
        np.testing.assert_allclose(np.asarray(updates), expected - before, rtol=5e-5, atol=1e-12)
        params = optax.apply_updates(params, updates)


@pytest.mark.parametrize("name,options,message", [
    ("adam", {"learning_rate": -0.1}, "adam learning_rate must be a positive finite number, got -0.1"),
    ("sgd", {"learning_rate": "fast"}, "sgd learning_rate must be a positive finite number, got 'fast'"),
    ("sgd", {"learning_rate": float("inf")}, "sgd learning_rate must be a positive finite number, got inf"),
    ("sgd", {"momentum": 1.0}, r"sgd momentum must be a number in \[0, 1\), got 1.0"),
    ("rmsprop", {"rho": 0.0}, r"rmsprop rho must be a number in \(0, 1\), got 0.0"),
    ("adamw", {"weight_decay": -1e-4}, "adamw weight_decay must be a non-negative number, got -0.0001"),
])
def test_out_of_range_optimizer_values_are_refused_in_one_line(name, options, message):
    with pytest.raises(ValueError, match=message):
        optimizers.get(name, **options)


@pytest.mark.parametrize("schedule,message", [
    ({"name": "exponential_decay", "decay_rate": -0.5}, "schedule exponential_decay decay_rate must be a positive"),
    ({"name": "exponential_decay", "decay_rate": "fast"}, "decay_rate must be a positive finite number, got 'fast'"),
    ({"name": "step_decay", "staircase": "yes"}, "staircase must be True or False, got 'yes'"),
    ({"name": "warmup_cosine", "end_value": -1.0}, "warmup_cosine end_value must be a non-negative finite number"),
    ({"name": "warmup_cosine", "init_value": float("nan")}, "init_value must be a non-negative finite number"),
    ({"name": "one_cycle", "pct_start": 1.5}, r"one_cycle pct_start must be a number in \(0, 1\), got 1.5"),
    ({"name": "one_cycle", "div_factor": 0.0}, "div_factor must be a positive finite number, got 0.0"),
])
def test_out_of_range_schedule_values_are_refused_in_one_line(schedule, message):
    with pytest.raises(ValueError, match=message):
        optimizers.get("adam", schedule_options=schedule, total_steps=100)
