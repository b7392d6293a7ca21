"""The train state (everything that changes during training, as one pytree) and the randomness derived from its key."""
from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import numpy as np
import optax

# Independent random streams derived from the one base key in the state
# (NOISE_STREAM: the per-example gradient noise of DP-SGD, so that it leaves the other draws unchanged).
STEP_STREAM, SHUFFLE_STREAM, NOISE_STREAM = 0, 1, 2


@flax.struct.dataclass
class TrainState:
    """`step`, `params`, `model_state` (e.g. BatchNorm statistics), `opt_state` and the base PRNG `key`.

    `loss_scale` is the dynamic loss scale of the `mixed_float16` policy (None otherwise).

    The base key is never consumed: the key of step `s` is
    `fold_in(fold_in(key, STEP_STREAM), s)`, so a step's randomness depends on
    (seed, step) only, and a resumed run draws exactly what the original did.
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: optax.OptState
    key: jax.Array
    loss_scale: Any = None

    def step_key(self) -> jax.Array:
        """The key of the current step (the base key stays unused)."""
        return derive_key(self.key, STEP_STREAM, self.step)


def with_key(state: TrainState, key) -> TrainState:
    """`state.replace(key=key)` without a dataclass `__init__`: the fit loop swaps the key twice a step."""
    new = object.__new__(type(state))
    new.__dict__.update(state.__dict__, key=key)
    return new


def derive_key(base_key: jax.Array, stream: int, index) -> jax.Array:
    """The key for `index` (a step or an epoch) in one stream; the base key stays unused."""
    return jax.random.fold_in(jax.random.fold_in(base_key, stream), index)


def in_order(key: jax.Array, n: int) -> jax.Array:
    """The order of an unshuffled epoch (one row per member for an ensemble's keys), placed as
    `epoch_permutation(key, ...)` is, on the key's mesh: a fit's programs take either without tracing again."""
    order = np.broadcast_to(np.arange(n, dtype=np.int32), (*key.shape, n))
    return jax.make_array_from_process_local_data(key.sharding, order)  # every process holds all of it


@functools.partial(jax.jit, static_argnums=2)
def epoch_permutation(key: jax.Array, epoch, n: int) -> jax.Array:
    """The order in which epoch `epoch` visits `n` examples, drawn from the base key's shuffle stream."""
    return jax.random.permutation(derive_key(key, SHUFFLE_STREAM, epoch), n)
