"""The compiled programs behind `Trainer.fit`, `evaluate` and `predict`, one set per state layout.

A program cuts its batch from data already on the devices (`perm` rows, or a
slice), so a step moves nothing from the host; each device computes only its
rows of a global batch (`Trainer._rows`). For an ensemble (`count` members) the
step is `jax.vmap`ped over the members' states, totals, orders and masks, the
data shared. The batch size is the last, static argument.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jaxnn.training.guard import guarded_step
from jaxnn.training.state import with_key
from jaxnn.training.steps import forward


@dataclasses.dataclass(frozen=True)
class FitPrograms:
    """`fit`'s compiled programs: `step` runs one train step, `chunk` a fused loop of several (dispatch.py).

    The state's base key never changes in a step, so it goes in beside the state and not out: a typed key
    array coming out of a program costs the host tens of microseconds a step to rebuild.
    """

    step: Callable
    chunk: Callable

    def __call__(self, state, totals, guard, data, perm, active, start, count, batch_size):
        key, state = state.key, with_key(state, None)
        if count == 1:
            state, totals, guard = self.step(state, key, totals, guard, data, perm, active, start, batch_size)
        else:
            state, totals, guard = self.chunk(state, key, totals, guard, data, perm, active, start, count, batch_size)
        return with_key(state, key), totals, guard


def slice_batch(data, start, batch_size):
    """Rows `start, ..., start + batch_size - 1` of every array of `data` (traced)."""
    return jax.tree_util.tree_map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, batch_size), data)


# A fused loop's iterations (train steps, evaluation batches) run as blocks of this many in a loop of known
# length. On a GPU, XLA runs a loop whose trip count it cannot know (a traced count) by reading its
# condition back to the host and waiting for the device at every iteration; a loop of known length is only
# queued. So a chunk waits once a block, and once an iteration for its last `count % BLOCK_STEPS`: on an
# H200 the seed model's fused epoch ran 1.36x faster than with every step waiting (bench/RESULTS.md).
BLOCK_STEPS = 32


def blocked_loop(start, count, body: Callable, carry):
    """`body(i, carry)` for i = start, ..., start + count - 1 in order (`count` traced), in blocks of
    `BLOCK_STEPS` (see there): the iterations of `lax.fori_loop(start, start + count, body, carry)`."""
    def block(j, carry):
        first = start + j * BLOCK_STEPS
        return jax.lax.fori_loop(0, BLOCK_STEPS, lambda i, c: body(first + i, c), carry)

    blocks = count // BLOCK_STEPS
    carry = jax.lax.fori_loop(0, blocks, block, carry)
    return jax.lax.fori_loop(start + blocks * BLOCK_STEPS, start + count, body, carry)


def fit_programs(trainer, shardings, count: int | None) -> FitPrograms:
    """`fit`'s programs for states with these `shardings` (`count`: an ensemble's members, or None)."""
    train_step = guarded_step(trainer._make_train_step(), trainer.check_finite)

    def one_step(index, state, totals, guard, data, perm, active, batch_size):
        idx = trainer._rows(jax.lax.dynamic_slice_in_dim(perm, index * batch_size, batch_size))
        batch = trainer._rows(jax.tree_util.tree_map(lambda a: a[idx], data))  # in bounds: idx comes from perm
        enabled = True if active is None else active  # False: an ensemble member stopped early
        return train_step(state, totals, guard, batch, enabled)

    if count is not None:  # members: their own state, totals, guard, order and mask; the data shared
        one_step = jax.vmap(one_step, in_axes=(None, 0, 0, 0, None, 0, 0, None))

    def fit_step(state, key, totals, guard, data, perm, active, index, batch_size):
        state, totals, guard = one_step(index, state.replace(key=key), totals, guard, data, perm, active,
                                        batch_size)
        return state.replace(key=None), totals, guard

    def fit_chunk(state, key, totals, guard, data, perm, active, start, count, batch_size):
        """Steps `start, ..., start + count - 1` of the epoch in one call; the count is a traced loop
        bound, so every fused length (K, an epoch's shorter last chunk) runs one program."""
        body = lambda i, carry: one_step(i, *carry, data, perm, active, batch_size)
        state, totals, guard = blocked_loop(start, count, body, (state.replace(key=key), totals, guard))
        return state.replace(key=None), totals, guard

    rep, keyless = trainer._replicated, shardings.replace(key=None)
    out = (keyless, rep, rep)
    return FitPrograms(
        jax.jit(fit_step, static_argnums=8, donate_argnums=0, in_shardings=(keyless, shardings.key, *[rep] * 6),
                out_shardings=out),
        jax.jit(fit_chunk, static_argnums=9, donate_argnums=0,
                in_shardings=(keyless, shardings.key, *[rep] * 7), out_shardings=out))


# Batches one evaluation call adds up: a validation pass at a small training batch size (375 batches of 32
# for the seed config) then takes a few dispatches instead of one per batch.
EVAL_BATCHES_PER_DISPATCH = 128


def eval_program(trainer, shardings, count: int | None) -> Callable:
    """`(params, model_state, totals, data, start, count, batch_size) -> totals`: batches `start, ...,
    start + count - 1` of `data` added in order (the same sums as one call per batch); the count is a
    traced loop bound, so every length runs one program."""
    eval_step = trainer._make_eval_step()
    if count is not None:
        eval_step = jax.vmap(eval_step, in_axes=(0, 0, None))

    def eval_chunk(params, model_state, totals, data, start, count, batch_size):
        def add_batch(index, totals):
            batch = trainer._rows(slice_batch(data, index * batch_size, batch_size))
            return jax.tree_util.tree_map(jnp.add, totals, eval_step(params, model_state, batch))

        return blocked_loop(start, count, add_batch, totals)

    rep = trainer._replicated
    return jax.jit(eval_chunk, static_argnums=6,
                   in_shardings=(shardings.params, shardings.model_state, rep, rep, rep, rep), out_shardings=rep)


def predict_program(trainer, shardings, count: int | None) -> Callable:
    """`(params, model_state, inputs, index, batch_size) -> outputs` of batch `index` of `inputs`."""

    def outputs(params, model_state, batch):
        return forward(trainer.model, trainer.policy, params, batch, model_state, None, False)[0]

    if count is not None:
        outputs = jax.vmap(outputs, in_axes=(0, 0, None))

    def predict_chunk(params, model_state, inputs, index, batch_size):
        return outputs(params, model_state, trainer._rows(slice_batch(inputs, index * batch_size, batch_size)))

    rep = trainer._replicated  # every process gets every prediction
    return jax.jit(predict_chunk, static_argnums=4,
                   in_shardings=(shardings.params, shardings.model_state, rep, rep), out_shardings=rep)


BUILDERS = {"fit": fit_programs, "eval": eval_program, "predict": predict_program}
