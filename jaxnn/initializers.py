"""Parameter initializers by Keras name, backed by `jax.nn.initializers`.

An initializer is `init(key, shape, dtype) -> array`. Names map to factories
with Keras's defaults, so `get("glorot_uniform")` is Dense's default kernel
init and `get("orthogonal", gain=2.0)` passes options. As in Keras, the
`*_normal` variance-scaling initializers draw from a normal truncated at two
standard deviations, rescaled so the variance is still scale / fan (jax does
the same); fans count the receptive field of conv kernels (in = shape[-2] *
receptive, out = shape[-1] * receptive).
"""
from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp

from jaxnn.registry import Registry

INITIALIZERS: Registry = Registry("initializer")
_ini = jax.nn.initializers
_DISTRIBUTIONS = {"truncated_normal": "truncated_normal", "untruncated_normal": "normal", "uniform": "uniform"}


def _register(name, *aliases):
    return INITIALIZERS.register(name, aliases=aliases)


@_register("variance_scaling")
def variance_scaling(scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal"):
    """Samples with variance scale / n, n = fan_in, fan_out or their average (Keras's VarianceScaling)."""
    if not scale > 0:
        raise ValueError(f"variance_scaling scale must be > 0, got {scale!r}")
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"variance_scaling mode must be one of fan_in, fan_out, fan_avg, got {mode!r}")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"variance_scaling distribution must be one of {', '.join(_DISTRIBUTIONS)}, got {distribution!r}")
    return _ini.variance_scaling(scale, mode, _DISTRIBUTIONS[distribution])


@_register("glorot_uniform", "xavier_uniform")
def glorot_uniform():
    """U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    return _ini.glorot_uniform()


@_register("glorot_normal", "xavier_normal")
def glorot_normal():
    """Truncated normal with variance 2 / (fan_in + fan_out)."""
    return _ini.glorot_normal()


@_register("he_uniform")
def he_uniform():
    """U(-limit, limit), limit = sqrt(6 / fan_in) (He et al. 2015)."""
    return _ini.he_uniform()


@_register("he_normal")
def he_normal():
    """Truncated normal with variance 2 / fan_in."""
    return _ini.he_normal()


@_register("lecun_uniform")
def lecun_uniform():
    """U(-limit, limit), limit = sqrt(3 / fan_in)."""
    return _ini.lecun_uniform()


@_register("lecun_normal")
def lecun_normal():
    """Truncated normal with variance 1 / fan_in (for SELU networks)."""
    return _ini.lecun_normal()


@_register("orthogonal")
def orthogonal(gain: float = 1.0):
    """A (semi-)orthogonal matrix times `gain` (Saxe et al. 2014); leading axes are flattened into rows."""
    return _ini.orthogonal(scale=gain)


@_register("zeros")
def zeros():
    """All zeros (Keras's default bias init)."""
    return _ini.zeros


@_register("ones")
def ones():
    """All ones."""
    return _ini.ones


@_register("constant")
def constant(value: float = 0.0):
    """Initializer filling every entry with `value`."""
    return _ini.constant(value)


@_register("random_normal", "normal")
def random_normal(mean: float = 0.0, stddev: float = 0.05):
    """N(mean, stddev^2), Keras's defaults mean 0 and stddev 0.05."""

    def init(key, shape, dtype=jnp.float32):
        return mean + stddev * jax.random.normal(key, shape, dtype)

    return init


@_register("truncated_normal")
def truncated_normal(mean: float = 0.0, stddev: float = 0.05):
    """N(mean, stddev^2) truncated at two standard deviations, as Keras's TruncatedNormal."""

    def init(key, shape, dtype=jnp.float32):
        return mean + _ini.truncated_normal(stddev)(key, shape, dtype)

    return init


@_register("random_uniform", "uniform")
def random_uniform(minval: float = -0.05, maxval: float = 0.05):
    """U(minval, maxval), Keras's defaults -0.05 and 0.05."""
    if not minval < maxval:
        raise ValueError(f"random_uniform needs minval < maxval, got {minval!r} and {maxval!r}")

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval, maxval)

    return init


def get(spec, **options):
    """An initializer from a name (with options, e.g. `get("constant", value=0.1)`) or a callable.

    Unknown names and options raise ValueError listing what is allowed.
    """
    if callable(spec) and not options:
        return spec
    factory = INITIALIZERS.get(spec)
    allowed = list(inspect.signature(factory).parameters)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r} for initializer {spec!r}; allowed: {', '.join(allowed) or 'none'}"
        )
    return factory(**options)


def names() -> list[str]:
    """Every registered initializer name (aliases included)."""
    return INITIALIZERS.names()
