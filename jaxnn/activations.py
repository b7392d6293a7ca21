"""Activation functions: plain `jnp -> jnp` functions, also reachable by name.

Each takes an array and returns one of the same shape; `activation=` arguments
of layers accept a function or one of `names()`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnn.registry import Registry, resolve

ACTIVATIONS: Registry = Registry("activation")


def _register(name, *aliases):
    return ACTIVATIONS.register(name, aliases=aliases)


@_register("linear", "identity")
def linear(x):
    """Identity: f(x) = x (a Dense layer with no activation)."""
    return x


@_register("threshold", "step", "heaviside")
def threshold(x):
    """Step function: 1 where x > 0, else 0. Its gradient is zero everywhere."""
    return jnp.where(x > 0, 1.0, 0.0).astype(jnp.result_type(x, jnp.float32))


@_register("sigmoid")
def sigmoid(x):
    """Logistic sigmoid 1 / (1 + exp(-x)), in (0, 1)."""
    return jax.nn.sigmoid(x)


@_register("relu")
def relu(x):
    """max(x, 0)."""
    return jax.nn.relu(x)


@_register("leaky_relu")
def leaky_relu(x, negative_slope: float = 0.2):
    """x for x >= 0, negative_slope * x otherwise (Keras's default slope 0.2)."""
    return jnp.where(x >= 0, x, negative_slope * x)


@_register("tanh")
def tanh(x):
    """Hyperbolic tangent, in (-1, 1)."""
    return jnp.tanh(x)


@_register("softmax")
def softmax(x, axis: int = -1):
    """exp(x) / sum(exp(x)) over `axis`; probabilities that sum to one."""
    return jax.nn.softmax(x, axis=axis)


def get(spec):
    """A function from a name, a function, or None (identity)."""
    if spec is None:
        return linear
    return resolve(ACTIVATIONS, spec)


def name_of(spec) -> str:
    """Display name of an activation spec (for summaries and errors)."""
    if spec is None:
        return "linear"
    if isinstance(spec, str):
        return spec
    return getattr(spec, "__name__", repr(spec))


def names() -> list[str]:
    return ACTIVATIONS.names()
