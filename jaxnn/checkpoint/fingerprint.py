"""Per-array fingerprints and finiteness computed on the devices where the arrays live, never gathered to a host.

A fingerprint is a uint32: the wrapping sum over elements of a hash of (element's bits, flat index).
Sums modulo 2**32 do not depend on the order of addition, so the value is the same whether the array
lives on one device or is split over many (any mesh, any process count), and every bit of every
element (NaN payloads and -0.0 included) and its position count.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_UINT = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def _mix(h):
    """murmur3's 32-bit finalizer: every input bit reaches every output bit."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _words(x):
    """One uint32 per element holding all of its bits (8-byte elements fold their two halves)."""
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    size = x.dtype.itemsize
    if size > 4:
        halves = jax.lax.bitcast_convert_type(x, jnp.uint32)
        return halves[..., 0] ^ _mix(halves[..., 1])
    return jax.lax.bitcast_convert_type(x, _UINT[size]).astype(jnp.uint32)


def _flat_index(shape):
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for dim in reversed(range(len(shape))):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, dim) * jnp.uint32(stride % 2**32)
        stride *= shape[dim]
    return index


def fingerprint(x) -> jax.Array:
    """The uint32 fingerprint of one array (traceable; the same for any sharding of `x`)."""
    return jnp.sum(_mix(_words(x) ^ _mix(_flat_index(x.shape) + jnp.uint32(0x9E3779B9))), dtype=jnp.uint32)


def _finite(x) -> jax.Array:
    return jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True)


@functools.partial(jax.jit)
def _summarize(arrays: list):
    return [fingerprint(a) for a in arrays], [_finite(a) for a in arrays]


def _host(x) -> np.ndarray:
    """A replicated result's value (readable in every process of a multi-process run)."""
    return np.asarray(x.addressable_data(0))


def summarize(arrays: list) -> tuple[list[int], list[bool]]:
    """(fingerprint, all finite) of each array, computed by one compiled call on the arrays' devices."""
    if not arrays:
        return [], []
    prints, finite = _summarize(list(arrays))
    return [int(_host(p)) for p in prints], [bool(_host(f)) for f in finite]
