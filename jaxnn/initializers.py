"""Parameter initializers by Keras name, backed by `jax.nn.initializers`.

An initializer is `init(key, shape, dtype) -> array`; the names and their
defaults follow Keras (e.g. `glorot_uniform` is Dense's default kernel init).
"""
from __future__ import annotations

import jax

from jaxnn.registry import Registry

INITIALIZERS: Registry = Registry("initializer")
_ini = jax.nn.initializers

for _name, _fn in {
    "glorot_uniform": _ini.glorot_uniform(),
    "glorot_normal": _ini.glorot_normal(),
    "he_uniform": _ini.he_uniform(),
    "he_normal": _ini.he_normal(),
    "lecun_uniform": _ini.lecun_uniform(),
    "lecun_normal": _ini.lecun_normal(),
    "orthogonal": _ini.orthogonal(),
    "zeros": _ini.zeros,
    "ones": _ini.ones,
}.items():
    INITIALIZERS.register(_name, _fn)


def constant(value: float):
    """Initializer filling every entry with `value`."""
    return _ini.constant(value)


def get(spec):
    """An initializer from a name or a callable `(key, shape, dtype) -> array`."""
    if callable(spec):
        return spec
    return INITIALIZERS.get(spec)


def names() -> list[str]:
    return INITIALIZERS.names()
