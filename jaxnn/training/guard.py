"""The non-finite guard: made per fit, folded per step on the device, decoded into a `NonFinite` on the host.

With `check_finite`, the train step reports a NaN/inf loss and one flag per
gradient array (`stats["nonfinite"]`); the guard keeps the first such step and
its flags, and once it holds one the loop's steps no longer update the state,
so the run ends with the last good parameters. Without it, only the running
loss of the epoch tells that a run went non-finite, and by which step.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxnn import checkpoint as ckpt


class NonFiniteError(RuntimeError):
    """Training stopped on a NaN or inf; the message names the step (and parameter), the checkpoints stay."""


@dataclasses.dataclass(frozen=True)
class NonFinite:
    """Why a run is no longer finite; `str()` is the History's `stop_reason`.

    `exact`: `step` is the bad step itself (the guard of `check_finite`), `what`
    is "loss", "gradient" or "gradient and loss" and `path` the first
    non-finite gradient's parameter. Otherwise the running `loss` was seen
    non-finite by `step`. `epoch` counts from 0 (None: not known); `member` is the
    ensemble member (None: not an ensemble).
    """

    step: int
    epoch: int | None
    what: str = "loss"
    path: str | None = None
    loss: float | None = None
    exact: bool = True
    member: int | None = None

    def __str__(self) -> str:
        epoch = "" if self.epoch is None else f" (epoch {self.epoch + 1})"
        if self.member is not None:
            epoch += f" in member {self.member}"
        if not self.exact:
            return f"non-finite loss ({self.loss}) by step {self.step}{epoch}"
        what = "loss" if self.path is None else f"gradient (first: {self.path})"
        also = " and loss" if self.what == "gradient and loss" else ""
        return f"non-finite {what}{also} at step {self.step}{epoch}; stopped with the last good parameters"


def fresh_guard(params) -> dict:
    """A guard that has seen no bad step: `step` -1, every flag False (one per parameter array)."""
    return {"step": jnp.int32(-1), "loss": jnp.bool_(False),
            "grads": jax.tree_util.tree_map(lambda _: jnp.bool_(False), params)}


def update_allowed(guard: dict) -> jax.Array:
    """Whether a step may still update the state: no bad step seen yet (traced)."""
    return guard["step"] < 0


def fold_guard(guard: dict, step, flags: dict) -> dict:
    """The guard after `step` with the step's `flags` (`stats["nonfinite"]`): the first bad step is kept (traced)."""
    bad = update_allowed(guard) & (flags["loss"] | jnp.any(jnp.stack(jax.tree_util.tree_leaves(flags["grads"]))))
    keep_first = lambda new, old: jnp.where(bad, new, old)
    return {"step": keep_first(step, guard["step"]), "loss": keep_first(flags["loss"], guard["loss"]),
            "grads": jax.tree_util.tree_map(keep_first, flags["grads"], guard["grads"])}


def guarded_step(train_step, check_finite: bool):
    """`(state, totals, guard, batch) -> (state, totals, guard)`: `train_step` with its statistics added to the
    epoch's `totals` and, with `check_finite`, folded into the guard; once a step went non-finite, later
    steps change nothing, so the state stays the last good one (traced). `enabled=False` (traced) leaves the
    state as it is, but for the step count (an ensemble member stopped early)."""
    def step(state, totals, guard, batch, enabled=True):
        if not check_finite:
            state, stats = train_step(state, batch, enabled)
            return state, jax.tree_util.tree_map(jnp.add, totals, stats), guard
        step = state.step
        state, stats = train_step(state, batch, update_allowed(guard) & enabled)
        guard = fold_guard(guard, step, stats.pop("nonfinite"))
        return state, jax.tree_util.tree_map(jnp.add, totals, stats), guard

    return step


def decode_guard(guard: dict, totals, step: int, epoch: int) -> NonFinite | None:
    """Why the run is no longer finite, from the guard (`{}`: none) or else the running loss; None if finite.

    Syncs with the device.
    """
    if guard:
        bad_step = int(jax.device_get(guard["step"]))
        if bad_step >= 0:
            flags = jax.device_get({"loss": guard["loss"], "grads": guard["grads"]})
            bad = [path for path, flag in ckpt.flatten(flags["grads"]).items() if flag]
            what = ("gradient and loss" if flags["loss"] else "gradient") if bad else "loss"
            return NonFinite(bad_step, epoch, what, bad[0] if bad else None)
    loss = float(jax.device_get(totals["loss"]["total"]))
    if not math.isfinite(loss):
        return NonFinite(step, epoch, loss=loss, exact=False)
    return None
