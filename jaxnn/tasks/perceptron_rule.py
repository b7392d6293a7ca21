"""Rosenblatt's perceptron (1957): a linear threshold unit trained by its own error-correction rule.

    prediction = step(x . kernel + bias)               step(z) = 1 if z > 0 else 0
    kernel <- kernel + learning_rate * (y - prediction) * x      one example at a time
    bias   <- bias   + learning_rate * (y - prediction)

No gradient is involved (the step has none): the weights move only on a
mistake, towards the missed example. On linearly separable data (AND, OR) the
rule stops making mistakes after finitely many updates (the perceptron
convergence theorem); on XOR no line separates the classes, so it never does
and at most 3 of the 4 rows can be right. From zero weights the learning rate
only scales the weights, so the predictions do not depend on it.

An epoch is a `lax.scan` over the examples inside a `lax.scan` over epochs:
the whole fit is one jitted pure function, parameters in and parameters out.

    params = perceptron.init(2)
    params, mistakes = perceptron.fit(params, x, y, epochs=10)   # mistakes per epoch
    perceptron.predict(params, x)                                 # 0/1 int32
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import validation


def init(num_features: int) -> dict:
    """Zero `kernel` (num_features,) and zero `bias`: the rule's classic starting point."""
    validation.positive_int("num_features", num_features)
    return {"kernel": jnp.zeros((num_features,), jnp.float32), "bias": jnp.zeros((), jnp.float32)}


def predict(params: dict, x) -> jax.Array:
    """Step of `x @ kernel + bias`: int32 1 where it is positive, else 0; x is (N, features) or (features,)."""
    return (x @ params["kernel"] + params["bias"] > 0).astype(jnp.int32)


def accuracy(params: dict, x, y) -> float:
    """Fraction of examples whose prediction equals the 0/1 label."""
    return float(jnp.mean(predict(params, jnp.asarray(x, jnp.float32)) == jnp.asarray(y)))


def fit(params: dict, x, y, *, epochs: int, learning_rate: float = 1.0, key=None) -> tuple[dict, jax.Array]:
    """Apply the rule example by example for `epochs` passes; returns (params, mistakes per epoch).

    Without `key` every epoch visits the examples in their order; with a PRNG
    `key` each epoch visits them in a fresh random order.
    """
    validation.positive_int("epochs", epochs)
    validation.positive_number("learning_rate", learning_rate)
    x, y = np.asarray(x, np.float32), np.asarray(y)
    features = params["kernel"].shape[0]
    if x.ndim != 2 or x.shape[1] != features or y.shape != x.shape[:1]:
        raise ValueError(f"x must be (N, {features}) and y (N,) for a perceptron with {features} inputs, "
                         f"got x {x.shape} and y {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1, found {sorted(set(np.unique(y).tolist()) - {0, 1})[:5]}")
    return _fit(params, x, y.astype(np.int32), key, float(learning_rate), epochs=epochs)


@functools.partial(jax.jit, static_argnames="epochs")
def _fit(params, x, y, key, learning_rate, *, epochs):
    def example(params, xy):
        xi, yi = xy
        error = yi - predict(params, xi)  # -1, 0 or +1
        step = learning_rate * error
        return {"kernel": params["kernel"] + step * xi, "bias": params["bias"] + step}, error != 0

    def epoch(params, epoch_key):
        order = jnp.arange(x.shape[0]) if epoch_key is None else jax.random.permutation(epoch_key, x.shape[0])
        params, mistakes = jax.lax.scan(example, params, (x[order], y[order]))
        return params, mistakes.sum(dtype=jnp.int32)

    keys = None if key is None else jax.random.split(key, epochs)
    return jax.lax.scan(epoch, params, keys, length=epochs)
