"""Ensembles and sweeps in one jitted step: a TrainState with a leading member axis on every leaf.

`Trainer.init(keys, ...)` with M keys makes M models at once (`jax.vmap` of
init); each member has its own PRNG key, so its own initialization, data order
and dropout draws, and optionally its own optimizer hyperparameters (injected
by `optax.inject_hyperparams`, set per member here). `fit`, `evaluate` and
`predict` see the member axis and vmap their steps over it.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import optimizers


def member_count(state) -> int | None:
    """The number of members of a state with a member axis (its `step` is a vector), else None."""
    return int(state.step.shape[0]) if np.ndim(state.step) == 1 else None


def as_member_keys(keys) -> jax.Array | None:
    """A key array of shape (M,) from M int seeds (a sequence, a range, an integer array) or M keys, or None
    when `keys` names one model: an int, one typed key, or one key's raw data (a uint32 array of shape (2,)).
    Seed `s` gives `jax.random.key(s)`, the key of a lone model of seed `s`."""
    if isinstance(keys, (int, np.integer)):
        return None
    if isinstance(keys, range) or (isinstance(keys, np.ndarray) and keys.ndim == 1
                                   and np.issubdtype(keys.dtype, np.integer) and keys.dtype != np.uint32):
        keys = [int(k) for k in keys]
    if isinstance(keys, (list, tuple)):
        if not keys:
            raise ValueError("keys must hold at least one key (one per member), got an empty sequence")
        if all(isinstance(k, (int, np.integer)) for k in keys):
            keys = [jax.random.key(int(k)) for k in keys]
        return jax.random.wrap_key_data(jnp.stack([jax.random.key_data(k) for k in keys]))
    keys = jnp.asarray(keys) if not isinstance(keys, jax.Array) else keys
    typed = jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
    if (typed and keys.ndim == 0) or (not typed and keys.ndim == 1):
        return None  # one key (typed, or raw key data)
    return keys if typed else jax.random.wrap_key_data(keys)


def set_hyperparams(opt_state, hyperparams: Mapping[str, Sequence[float]] | None, members: int):
    """`opt_state` (with a member axis) with each named injected hyperparameter set to one value per member."""
    for name, values in (hyperparams or {}).items():
        values = np.asarray(values, np.float32)
        if values.shape != (members,):
            raise ValueError(f"hyperparams[{name!r}] must give one value per member ({members}), got shape "
                             f"{values.shape}")
        opt_state = optimizers.set_hyperparam(opt_state, name, values)
    return opt_state


def member(tree, m: int):
    """Member `m`'s slice of a tree with a member axis (keys sliced through their data: a slice is not a use)."""
    def take(a):
        if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jax.random.key_data(a)[m], impl=jax.random.key_impl(a))
        return a[m]

    return jax.tree_util.tree_map(take, tree)


def member_spec(tree):
    """The shapes and dtypes of one member's slice of `tree` (`jax.ShapeDtypeStruct`s; nothing computed)."""
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a)[1:], a.dtype), tree)


def members_spec(tree, count: int):
    """The shapes and dtypes of `count` members stacked from one member's `tree` (`member_spec`'s inverse)."""
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((count, *np.shape(a)), a.dtype), tree)


@jax.jit
def stack(trees: list):
    """The members' trees stacked along a new leading member axis, as one program (compiled once per tree
    layout and process, where stacking leaf by leaf compiles one program per leaf shape)."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def each_member(fn, tree, members: int) -> list:
    """`fn` of each member's slice of `tree` (e.g. the metrics of each member's statistics)."""
    return [fn(member(tree, m)) for m in range(members)]


def broadcast(tree, members: int):
    """`tree` (small: statistics, flags) repeated along a new leading member axis, on the host."""
    return jax.tree_util.tree_map(lambda a: np.broadcast_to(np.asarray(a), (members, *np.shape(a))), tree)


def mean_logs(logs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean over members of each key."""
    return {k: float(np.mean([log[k] for log in logs])) for k in logs[0]}
