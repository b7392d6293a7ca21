"""Activation functions: plain `jnp -> jnp` functions, also reachable by name.

Each takes an array and returns one of the same shape; `activation=` arguments
of layers accept a function or one of `names()`. Options (slopes, axes) keep
Keras's defaults; a layer that needs other values takes a function such as
`functools.partial(leaky_relu, negative_slope=0.1)` or uses the layers in
`jaxnn.layers.activation`.
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
    """Step function: 1 where x > 0, else 0.

    Its gradient is zero everywhere (and undefined at 0), so gradient descent
    cannot train through it; the perceptron uses its own update rule.
    """
    return jnp.where(x > 0, 1.0, 0.0).astype(jnp.result_type(x, jnp.float32))


@_register("sigmoid")
def sigmoid(x):
    """Logistic sigmoid 1 / (1 + exp(-x)), in (0, 1)."""
    return jax.nn.sigmoid(x)


@_register("hard_sigmoid")
def hard_sigmoid(x):
    """Piecewise-linear sigmoid relu6(x + 3) / 6 (Keras 3's definition)."""
    return jax.nn.hard_sigmoid(x)


@_register("relu")
def relu(x, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0):
    """Keras's relu: x above `threshold` (capped at `max_value`), negative_slope * (x - threshold) below.

    With the defaults it is max(x, 0).
    """
    x = jnp.asarray(x)
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return jax.nn.relu(x)  # the common case: a plain max (same zero gradient at 0 as the general form)
    positive = jnp.where(x > threshold, x, jnp.zeros((), x.dtype))
    if max_value is not None:
        positive = jnp.minimum(positive, max_value)
    if negative_slope == 0.0:
        return positive
    return positive + negative_slope * jnp.minimum(x - threshold, 0.0)


@_register("relu6")
def relu6(x):
    """min(max(x, 0), 6)."""
    return jax.nn.relu6(x)


@_register("leaky_relu")
def leaky_relu(x, negative_slope: float = 0.2):
    """x for x >= 0, negative_slope * x otherwise (Keras's default slope 0.2)."""
    return jax.nn.leaky_relu(x, negative_slope)


@_register("tanh")
def tanh(x):
    """Hyperbolic tangent, in (-1, 1)."""
    return jnp.tanh(x)


@_register("softmax")
def softmax(x, axis: int = -1):
    """exp(x) / sum(exp(x)) over `axis`; probabilities that sum to one."""
    return jax.nn.softmax(x, axis=axis)


@_register("log_softmax")
def log_softmax(x, axis: int = -1):
    """log(softmax(x)) over `axis`, computed without overflow as x - logsumexp(x)."""
    return jax.nn.log_softmax(x, axis=axis)


@_register("elu")
def elu(x, alpha: float = 1.0):
    """x for x > 0, alpha * (exp(x) - 1) otherwise (Clevert et al. 2015)."""
    return jax.nn.elu(x, alpha)


@_register("selu")
def selu(x):
    """Scaled ELU with Klambauer et al.'s constants (self-normalizing networks)."""
    return jax.nn.selu(x)


@_register("gelu", "gelu_exact")
def gelu(x, approximate: bool = False):
    """Gaussian error linear unit x * Phi(x); exact by default, as Keras 3 (jax defaults to the tanh form)."""
    return jax.nn.gelu(x, approximate=approximate)


@_register("gelu_tanh", "gelu_approximate")
def gelu_tanh(x):
    """GELU's tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return gelu(x, approximate=True)


@_register("silu", "swish")
def silu(x):
    """x * sigmoid(x) (SiLU, also called swish)."""
    return jax.nn.silu(x)


@_register("softplus")
def softplus(x):
    """log(1 + exp(x)), computed without overflow for large x."""
    return jax.nn.softplus(x)


@_register("mish")
def mish(x):
    """x * tanh(softplus(x)) (Misra 2019)."""
    return jax.nn.mish(x)


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
    """Every registered activation name (aliases included)."""
    return ACTIVATIONS.names()
