"""How many train steps each dispatch runs (`steps_per_dispatch`): a fixed K, or "auto".

A fused chunk of K steps is one compiled call, so the host's per-step Python
(dispatch, callbacks, signal checks) is paid once per K steps; callbacks, logs,
checkpoints and the SIGTERM check happen between chunks, so a chunk is also the
unit of latency. "auto" times one chunk of `PROBE_STEPS` after the compiling one
and picks K so that a dispatch takes about `AUTO_TARGET_S`, capped at the epoch.
In a multi-process run every process takes process 0's K, so that all cut their
epochs at the same steps (their collectives and SIGTERM agreement need that).
"""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxnn import validation

AUTO = "auto"
AUTO_TARGET_S = 0.1  # the middle of the 50-200 ms a dispatch should take
PROBE_STEPS = 8


def check_steps_per_dispatch(value, field: str = "steps_per_dispatch"):
    """`value` if it is a positive integer or "auto"; else one-line ValueError naming `field`."""
    if value == AUTO:
        return value
    return validation.integer(field, value, 1, 'a positive integer or "auto"')


class ChunkSizes:
    """The length of the next chunk; with "auto", `probing` chunks are run (the loop times them) until K is known."""

    def __init__(self, steps_per_dispatch, steps_per_epoch: int):
        steps_per_dispatch = check_steps_per_dispatch(steps_per_dispatch)
        self._cap = steps_per_epoch
        self._probes = 0  # probe chunks run so far ("auto"); -1: K chosen
        self.size = min(PROBE_STEPS, steps_per_epoch) if steps_per_dispatch == AUTO else steps_per_dispatch
        if steps_per_dispatch != AUTO:
            self._probes = -1

    @property
    def probing(self) -> bool:
        """Whether the next chunk is a probe: the loop waits for it and reports its time to `observe`."""
        return self._probes >= 0

    @property
    def timed(self) -> bool:
        """Whether the next probe counts: the first one includes the compile, so it is not timed."""
        return self._probes >= 1

    def observe(self, count: int, seconds: float | None) -> None:
        """A probe chunk of `count` steps took `seconds` (None: the compiling one, not timed)."""
        self._probes += 1
        if seconds is None or count < self.size:  # an epoch's short last chunk: probe again next time
            return
        k = int(np.clip(round(count * AUTO_TARGET_S / max(seconds, 1e-9)), 1, self._cap))
        if jax.process_count() > 1:
            k = int(multihost_utils.broadcast_one_to_all(np.int32(k)))
        self.size, self._probes = k, -1
