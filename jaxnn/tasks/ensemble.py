"""A sweep's test results: its members' own metrics, and those of their ensemble (the mean of their probabilities)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.training.steps import batch_stats, results


def ensemble_outputs(outputs, *, from_logits: bool = False) -> np.ndarray:
    """The ensemble's outputs from its members' (M, n, classes), in the members' own terms: the mean of their
    probabilities, or with `from_logits` that mean's logits (log-probabilities; log-odds for one sigmoid unit)."""
    outputs = jnp.asarray(outputs, jnp.float32)
    if not from_logits:
        return np.asarray(outputs.mean(axis=0))
    log_mean = lambda log_p: jax.scipy.special.logsumexp(log_p, axis=0) - math.log(outputs.shape[0])
    if outputs.shape[-1] == 1:
        return np.asarray(log_mean(jax.nn.log_sigmoid(outputs)) - log_mean(jax.nn.log_sigmoid(-outputs)))
    return np.asarray(log_mean(jax.nn.log_softmax(outputs, axis=-1)))


def ensemble_metrics(trainer, outputs, y) -> dict[str, float]:
    """The trainer's loss and metrics of the ensemble's `outputs` (from `ensemble_outputs`) against `y`."""
    stats = batch_stats(trainer.loss_fn, trainer.metric_objects, {"targets": jnp.asarray(y)}, jnp.asarray(outputs))
    return results(trainer.metric_objects, jax.device_get(stats))


def member_results(members, tests) -> list[dict]:
    """One dict per member: its seed, its hyperparameters and its test metrics (`trainer.evaluate`'s dicts)."""
    return [{"seed": member["seed"], **member["hyperparams"], **{f"test_{k}": v for k, v in test.items()}}
            for member, test in zip(members, tests)]
