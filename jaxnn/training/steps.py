"""Pure step builders: `train_step(state, batch) -> (state, stats)` and `eval_step`.

A batch is a dict: `inputs` (an array or a pytree of arrays for several inputs),
`targets`, and optional per-example `weights` (0 marks padding). Steps return
metric *statistics* (sums and counts) so that adding them over batches gives
exact whole-set values; nothing here talks to the host.

Options of the train step, all inside the one compiled function:
- `policy`: mixed precision (see `precision.py`); losses and statistics stay float32.
- `accumulate_steps=k`: the batch is cut into k micro-batches whose gradients
  are summed by a `lax.scan` (one running sum, no other parameter-sized buffer)
  before one optimizer update: the gradient of the whole batch's loss with the
  memory of a micro-batch.
- `check_finite`: the step also returns `stats["nonfinite"]` (`loss`: bool,
  `grads`: one bool per parameter array) and applies no update when anything
  is NaN or inf, so the state stays the last good one.
- `per_example` (a `per_example.PerExample`): one gradient per example, clipped,
  summed and noised (DP-SGD), and/or a histogram of their norms in
  `stats["grad_norm"]`. With accumulation each micro-batch's clipped sum is
  accumulated and the noise added once.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxnn.layers.base import Layer
from jaxnn.losses import MIN_TOTAL_WEIGHT, reduce
from jaxnn.metrics import Mean
from jaxnn.training import per_example as per_example_lib
from jaxnn.training.precision import get_policy
from jaxnn.training.state import NOISE_STREAM, TrainState, derive_key

LossFn = Callable  # (targets, preds) -> per-example losses


def batch_stats(loss_fn: LossFn, metrics: Sequence, batch, preds, per_example_loss=None) -> dict:
    """Summable statistics of the loss and each metric for one batch."""
    weights = batch.get("weights")
    if per_example_loss is None:
        per_example_loss = loss_fn(batch["targets"], preds)
    stats = {"loss": Mean("loss").update(per_example_loss, weights)}
    for metric in metrics:
        stats[metric.name] = metric.update(batch["targets"], preds, weights)
    return stats


def forward(model: Layer, policy, params, inputs, model_state, key, train):
    """Model outputs in float32 under `policy`; new model state in the old state's dtypes."""
    preds, new_state = model.apply(policy.cast_to_compute(params), policy.cast_to_compute(inputs),
                                   state=model_state, key=key, train=train)
    if policy.is_mixed and train:
        new_state = jax.tree_util.tree_map(lambda new, old: new.astype(old.dtype), new_state, model_state)
    return policy.cast_to_output(preds), new_state


def example_gradients(model: Layer, loss_fn: LossFn, params, model_state, batch: dict, *, policy="float32",
                      keys=None, train: bool = False, scale=None):
    """The gradient of each example's loss (times its weight, and `scale`): `params`' pytree with a leading
    example axis, by `jax.vmap(jax.grad(...))` over the batch; and the predictions.

    `keys` holds one PRNG key per example (train-mode randomness such as Dropout), or is None.
    """
    policy = get_policy(policy)

    def example_loss(params, example, key):
        one = jax.tree_util.tree_map(lambda a: a[None], example)
        preds, _ = forward(model, policy, params, one["inputs"], model_state, key, train)
        loss = loss_fn(one["targets"], preds)[0]
        if "weights" in example:
            loss = loss * example["weights"]
        return (loss if scale is None else loss * scale), jax.tree_util.tree_map(lambda p: p[0], preds)

    return jax.vmap(jax.grad(example_loss, has_aux=True), in_axes=(None, 0, None if keys is None else 0))(
        params, batch, keys)


def _split_micro_batches(batch: dict, k: int) -> dict:
    def split(a):
        if a.shape[0] % k:
            raise ValueError(f"batch size {a.shape[0]} is not divisible by accumulate_steps {k}")
        return a.reshape(k, a.shape[0] // k, *a.shape[1:])

    return jax.tree_util.tree_map(split, batch)


def make_train_step(model: Layer, loss_fn: LossFn, tx: optax.GradientTransformation, metrics: Sequence = (), *,
                    policy="float32", accumulate_steps: int = 1, check_finite: bool = False,
                    per_example: per_example_lib.PerExample | None = None) -> Callable:
    """The pure (un-jitted) train step `(state, batch, enabled=True) -> (state, stats)`.

    `enabled=False` (a traced bool) makes the step leave the state unchanged
    but for the step count; the fit loop uses it once a non-finite step was seen.
    """
    policy = get_policy(policy)

    def gradients(state: TrainState, batch: dict):
        """Gradients of the batch's mean loss, new model state, summed statistics."""
        scale = state.loss_scale.scale if policy.loss_scaling else None

        def objective(params, model_state, micro, key, total_weight):
            preds, new_model_state = forward(model, policy, params, micro["inputs"], model_state, key, True)
            per_example = loss_fn(micro["targets"], preds)
            if total_weight is None:
                loss = reduce(per_example, micro.get("weights"))
            else:  # a micro-batch's share of the whole batch's weighted mean
                weights = micro.get("weights")
                loss = jnp.sum(per_example if weights is None else per_example * weights) / total_weight
            if scale is not None:
                loss = loss * scale
            return loss, (new_model_state, batch_stats(loss_fn, metrics, micro, preds, per_example))

        def example_grad_fn(params, model_state, micro, key, total_weight):
            """`grad_fn` from per-example gradients: their clipped sum over `total_weight`, and their norms."""
            size = jax.tree_util.tree_leaves(micro["targets"])[0].shape[0]
            # Loss scaling at the magnitude of the plain step's (a batch-mean share), then removed: true norms.
            example_scale = None if scale is None else scale / size
            grads, preds = example_gradients(model, loss_fn, params, model_state, micro, policy=policy,
                                             keys=jax.random.split(key, size), train=True, scale=example_scale)
            if scale is not None:
                grads = jax.tree_util.tree_map(lambda g: g / example_scale, grads)
            grads = per_example_lib.trainable_only(model, grads)
            norms = per_example_lib.example_norms(grads)
            summed = per_example_lib.clipped_sum(grads, norms, per_example.clip_norm or None)
            stats = batch_stats(loss_fn, metrics, micro, preds)
            if per_example.quantiles:
                stats[per_example_lib.HISTOGRAM_KEY] = per_example_lib.norm_histogram(norms, micro.get("weights"))
            return jax.tree_util.tree_map(lambda g: g / total_weight, summed), (model_state, stats)

        grad_fn = jax.grad(objective, has_aux=True) if per_example is None else example_grad_fn
        weights = batch.get("weights")
        total_weight = None
        if accumulate_steps > 1 or per_example is not None:
            # Floored as in `losses.reduce`: a batch of weight 0 adds nothing (and its noise is left out below).
            total_weight = (jnp.asarray(jax.tree_util.tree_leaves(batch["targets"])[0].shape[0], jnp.float32)
                            if weights is None else jnp.maximum(jnp.sum(weights), MIN_TOTAL_WEIGHT))
        if accumulate_steps == 1:
            grads, (model_state, stats) = grad_fn(state.params, state.model_state, batch, state.step_key(),
                                                  total_weight)
        else:
            micro_batches = _split_micro_batches(batch, accumulate_steps)
            keys = jax.random.split(state.step_key(), accumulate_steps)

            def accumulate(carry, xs):
                grad_sum, model_state, stat_sum = carry
                micro, key = xs
                grads, (model_state, stats) = grad_fn(state.params, model_state, micro, key, total_weight)
                add = lambda a, b: jax.tree_util.tree_map(jnp.add, a, b)
                return (add(grad_sum, grads), model_state, add(stat_sum, stats)), None

            zero_grads = jax.tree_util.tree_map(jnp.zeros_like, state.params)
            first = jax.tree_util.tree_map(lambda a: a[0], micro_batches)
            stats_shape = jax.eval_shape(  # shapes only: any key will do, and the step's keys stay unused
                lambda m: grad_fn(state.params, state.model_state, m, jax.random.key(0), total_weight)[1][1], first)
            zero_stats = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), stats_shape)
            (grads, model_state, stats), _ = jax.lax.scan(
                accumulate, (zero_grads, state.model_state, zero_stats), (micro_batches, keys))
        if per_example is None:
            if scale is not None:
                grads = jax.tree_util.tree_map(lambda g: g / scale, grads)
        elif per_example.noise_multiplier:  # once per step, from its own stream: other draws stay as they were
            noise = per_example_lib.gaussian_noise(derive_key(state.key, NOISE_STREAM, state.step), grads,
                                                   per_example.noise_multiplier * per_example.clip_norm)
            weighted = total_weight > MIN_TOTAL_WEIGHT  # a batch of no weight: no noise either, so no update
            grads = jax.tree_util.tree_map(lambda g, z: g + jnp.where(weighted, z / total_weight, 0.0), grads, noise)
        return grads, model_state, stats

    def train_step(state: TrainState, batch: dict, enabled=True):
        if per_example is not None:
            per_example_lib.refuse_model_state(state.model_state)
        grads, model_state, stats = gradients(state, batch)
        ok = jnp.asarray(enabled)
        gated = check_finite or policy.loss_scaling or enabled is not True
        loss_scale = state.loss_scale
        if check_finite or policy.loss_scaling:
            grad_bad = jax.tree_util.tree_map(lambda g: ~jnp.all(jnp.isfinite(g)), grads)
            grads_finite = ~jnp.any(jnp.stack(jax.tree_util.tree_leaves(grad_bad) or [jnp.bool_(False)]))
        if policy.loss_scaling:  # an overflow is expected now and then: skip the step, lower the scale
            loss_scale = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old),
                                                loss_scale.adjust(grads_finite), loss_scale)
            ok = ok & grads_finite
        if check_finite:
            loss_bad = ~jnp.isfinite(stats["loss"]["total"])
            if policy.loss_scaling:  # overflowing gradients are the loss scale's business, not an error
                grad_bad = jax.tree_util.tree_map(jnp.zeros_like, grad_bad)
            stats["nonfinite"] = {"loss": loss_bad, "grads": grad_bad}
            ok = ok & ~loss_bad & grads_finite
        def update(_):
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            return {"params": optax.apply_updates(state.params, updates), "opt_state": opt_state,
                    "model_state": model_state}

        def keep(_):
            return {"params": state.params, "opt_state": state.opt_state, "model_state": state.model_state}

        # A skipped update runs no optimizer arithmetic at all (cheaper than selecting between two states).
        new = jax.lax.cond(ok, update, keep, None) if gated else update(None)
        return state.replace(step=state.step + 1, loss_scale=loss_scale, **new), stats

    return train_step


def make_eval_step(model: Layer, loss_fn: LossFn, metrics: Sequence = (), *, policy="float32") -> Callable:
    """The pure eval step `(params, model_state, batch) -> stats` (inference mode)."""
    policy = get_policy(policy)

    def eval_step(params, model_state, batch: dict):
        preds, _ = forward(model, policy, params, batch["inputs"], model_state, None, False)
        return batch_stats(loss_fn, metrics, batch, preds)

    return eval_step


def results(metrics: Sequence, stats: dict) -> dict[str, float]:
    """Final values from accumulated statistics (host-side floats)."""
    out = {"loss": float(Mean().result(stats["loss"]))}
    for metric in metrics:
        out[metric.name] = float(metric.result(stats[metric.name]))
    if per_example_lib.HISTOGRAM_KEY in stats:
        out.update(per_example_lib.norm_quantiles(stats[per_example_lib.HISTOGRAM_KEY]))
    return out
