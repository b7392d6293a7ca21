"""Pure step builders: `train_step(state, batch) -> (state, stats)` and `eval_step`.

A batch is a dict: `inputs` (an array or a pytree of arrays for several inputs),
`targets`, and optional per-example `weights` (0 marks padding). Steps return
metric *statistics* (sums and counts) so that adding them over batches gives
exact whole-set values; nothing here talks to the host.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import optax

from jaxnn.layers.base import Layer
from jaxnn.losses import reduce
from jaxnn.metrics import Mean
from jaxnn.training.state import TrainState

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


def make_train_step(model: Layer, loss_fn: LossFn, tx: optax.GradientTransformation,
                    metrics: Sequence = ()) -> Callable:
    """The pure (un-jitted) train step for `model`, `loss_fn` and optimizer `tx`."""

    def train_step(state: TrainState, batch: dict):
        def objective(params):
            preds, model_state = model.apply(params, batch["inputs"], state=state.model_state,
                                             key=state.step_key(), train=True)
            per_example = loss_fn(batch["targets"], preds)
            return reduce(per_example, batch.get("weights")), (preds, per_example, model_state)

        grads, (preds, per_example, model_state) = jax.grad(objective, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                                  model_state=model_state, opt_state=opt_state)
        return new_state, batch_stats(loss_fn, metrics, batch, preds, per_example)

    return train_step


def make_eval_step(model: Layer, loss_fn: LossFn, metrics: Sequence = ()) -> Callable:
    """The pure eval step `(params, model_state, batch) -> stats` (inference mode)."""

    def eval_step(params, model_state, batch: dict):
        preds, _ = model.apply(params, batch["inputs"], state=model_state, train=False)
        return batch_stats(loss_fn, metrics, batch, preds)

    return eval_step


def results(metrics: Sequence, stats: dict) -> dict[str, float]:
    """Final values from accumulated statistics (host-side floats)."""
    out = {"loss": float(Mean().result(stats["loss"]))}
    for metric in metrics:
        out[metric.name] = float(metric.result(stats[metric.name]))
    return out
