"""How many train steps each dispatch runs (`steps_per_dispatch`): a fixed K, or "auto".

A fused chunk of K > 1 steps is one compiled call (a loop over the batch
indices), so the host's per-step Python (dispatch, callbacks, signal checks) is
paid once per K steps; callbacks, logs, checkpoints and the SIGTERM check happen
between chunks, so a chunk is also the unit of latency. A chunk of one step runs
the plain one-step program. XLA does not always compile a loop body as well as
the same step alone: on CPU a convolution inside a loop runs a much slower
kernel (jax-ml/jax#12868). So "auto" measures both: `PROBE_STEPS` one-step
dispatches, then a loop chunk of `PROBE_STEPS` (each after its compiling call),
and fuses only when the loop is faster per step, with K chosen so that a
dispatch takes about `AUTO_TARGET_S`, capped at the epoch. A loop probe that
comes out slower, but by less than `CLEARLY_SLOWER`, is timed again (at most
`LOOP_PROBES` times, the fastest counting): one hiccup of the machine in an
8-step chunk must not cost a whole run its fusing. A step whose one-step
dispatch takes more than `LONG_STEP_S` stays at one step a dispatch without
a loop probe: the host's per-dispatch overhead (well under a millisecond) is
then noise, and the loop's compile and probe (seconds for a CPU convolution)
would buy nothing.
In a multi-process run every process takes process 0's choice, so that all cut
their epochs at the same steps (their collectives and SIGTERM agreement need that).
"""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxnn import validation

AUTO = "auto"
AUTO_TARGET_S = 0.1  # the middle of the 50-200 ms a dispatch should take
PROBE_STEPS = 8
LOOP_PROBES = 3
CLEARLY_SLOWER = 3.0  # a loop this much slower per step is slow (CPU convolutions: ~10x), not noise
LONG_STEP_S = 0.02  # a one-step dispatch this long: the per-dispatch overhead is noise, no loop probe


def check_steps_per_dispatch(value, field: str = "steps_per_dispatch"):
    """`value` if it is a positive integer or "auto"; else one-line ValueError naming `field`."""
    if value == AUTO:
        return value
    return validation.integer(field, value, 1, 'a positive integer or "auto"')


class ChunkSizes:
    """The length of the next chunk; with "auto", `probing` chunks are run (the loop waits for each and
    reports its time to `observe`) until K is chosen."""

    def __init__(self, steps_per_dispatch, steps_per_epoch: int):
        steps_per_dispatch = check_steps_per_dispatch(steps_per_dispatch)
        self._cap = steps_per_epoch
        self._probe = min(PROBE_STEPS, steps_per_epoch)
        auto = steps_per_dispatch == AUTO and self._probe > 1
        # Probe phases: 0 compiles the one-step program, 1 times it, 2 compiles the loop, 3 times it; None: done.
        self._phase = 0 if auto else None
        self._one_step: list[float] = []
        self._fused: list[float] = []
        self.size = 1 if steps_per_dispatch == AUTO else steps_per_dispatch

    @property
    def probing(self) -> bool:
        """Whether the next chunk is a probe: the loop waits for it and reports its time to `observe`."""
        return self._phase is not None

    @property
    def timed(self) -> bool:
        """Whether the next probe's time counts (not a compiling call)."""
        return self._phase in (1, 3)

    def fit_within(self, steps: int) -> None:
        """Chunks end every `steps` steps (a callback's `every_steps`): probe with loops that fit, so that
        probing can end (a loop probe cut short is not timed)."""
        if steps >= 2:
            self._probe = min(self._probe, steps)
            if self._phase in (2, 3):
                self.size = min(self.size, self._probe)

    def observe(self, count: int, seconds: float | None) -> None:
        """A probe chunk of `count` steps took `seconds` (None: not timed)."""
        if count != self.size:  # cut short (an epoch end, a callback's every_steps): probe it again
            return
        if self._phase == 0:
            self._phase = 1
        elif self._phase == 1:
            self._one_step.append(seconds)
            if len(self._one_step) == self._probe:
                if _agreed(float(np.median(self._one_step)) > LONG_STEP_S):
                    self._phase = None  # one step a dispatch: nothing to gain
                else:
                    self._phase, self.size = 2, self._probe
        elif self._phase == 2:
            self._phase = 3
        elif self._phase == 3:
            self._fused.append(seconds / count)
            one_step, fused = float(np.median(self._one_step)), min(self._fused)
            again = one_step <= fused < CLEARLY_SLOWER * one_step and len(self._fused) < LOOP_PROBES
            if not _agreed(again):
                self._choose(one_step, fused)

    def _choose(self, one_step: float, fused: float) -> None:
        k = int(np.clip(round(AUTO_TARGET_S / max(fused, 1e-9)), 1, self._cap)) if fused < one_step else 1
        self.size, self._phase = _agreed(k), None


def _agreed(value):
    """Process 0's `value` (a bool or an int) on every process: all run the same chunks."""
    if jax.process_count() == 1:
        return value
    return type(value)(multihost_utils.broadcast_one_to_all(np.int32(value)))
