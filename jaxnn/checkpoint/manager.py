"""`step_<n>` checkpoints of one run in one directory: locked, saved asynchronously, pruned, restored newest-valid.

Saving: every process calls `save`; the training thread waits only while the arrays are fingerprinted
and copied on the devices (the next step donates the originals). A background thread hands the copies
to orbax's async checkpointer, whose start (copying them to host memory: most of a small state's
blocked time, bench/RESULTS.md) then overlaps the steps, and orbax writes them in its own thread; the
copies stay on the devices until the write is done. Once orbax has committed, process 0 writes the
sealed `meta.json` and then drops the checkpoints no longer kept (the last `keep` complete ones plus
the best by `metric`). A failed write is raised at the next `save` or at `wait` as one line. Nothing
is written without the directory's lock (`lock.py`); the leftovers of a killed save or prune are cleaned only under it.

Restoring takes the newest checkpoint that verifies (its `meta.json` sealed, every array's fingerprint
equal), warning about each one skipped, onto the shardings the caller's targets name.
"""
from __future__ import annotations

import os
import re
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import validation
from jaxnn.checkpoint import lock, store
from jaxnn.checkpoint.store import CorruptCheckpointError
from jaxnn.io import Background

_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointManager:
    """`step_<n>` checkpoints in `directory`: keeps the last `keep` plus the best by `metric` (if `best_mode`)."""

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, best_mode: str | None = None):
        validation.positive_int("keep", keep)
        if best_mode not in (None, "min", "max"):
            raise ValueError(f"best_mode must be 'min', 'max' or None, got {best_mode!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.keep, self.best_mode = keep, best_mode
        self._checkpointer, self._io, self._cleaned = None, Background(), False
        self._saved = False  # a save was started: the directory holds more than the lock

    def path(self, step: int) -> str:
        return os.path.join(self.directory, f"step_{step:09d}")

    def lock(self, claim: bool = True) -> None:
        """Take the directory's lock (process 0; every process raises if it is held by another run); without
        `claim`, the lock file is left untouched until a later `lock()`."""
        error = None
        if store.is_primary():
            try:
                lock.acquire(self.directory, claim)
            except lock.CheckpointLockedError as e:
                error = e
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            refused = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
            if refused and error is None:
                error = lock.CheckpointLockedError(f"{self.directory} is in use by another run (see process 0)")
        if error is not None:
            raise error

    def all_steps(self) -> list[int]:
        """Steps of every `step_<n>` directory, complete or not, oldest first."""
        if not os.path.isdir(self.directory):
            return []
        found = (_STEP_DIR.match(n) for n in os.listdir(self.directory))
        return sorted(int(m.group(1)) for m in found if m)

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints (their `meta.json` written), oldest first."""
        return [s for s in self.all_steps() if os.path.isfile(os.path.join(self.path(s), store.META_FILE))]

    def latest_meta(self) -> dict | None:
        """Verified metadata of the newest checkpoint whose `meta.json` verifies (no arrays read), or None."""
        for step in reversed(self.steps()):
            try:
                return store.read_meta(self.path(step))
            except CorruptCheckpointError:
                continue
        return None

    def best_step(self) -> int | None:
        """The step whose saved `metric` is best under `best_mode` (None without one)."""
        if self.best_mode is None:
            return None
        scored = []
        for step in self.steps():
            try:
                metric = store.read_meta(self.path(step)).get("metric")
            except CorruptCheckpointError:
                continue
            if metric is not None:
                scored.append((metric if self.best_mode == "min" else -metric, step))
        return min(scored)[1] if scored else None

    def save(self, step: int, tree, meta: dict | None = None, metric: float | None = None) -> str:
        """Start saving checkpoint `step` (returns once the arrays are copied on the devices); NonFiniteStateError
        if `tree` holds NaN/inf, CheckpointWriteError if the previous save failed."""
        record, arrays = store.prepare(tree, {**(meta or {}), "step": int(step), "metric": metric})
        self.wait()
        self.lock()
        path = self.path(step)
        self._saved = True
        if store.is_primary():
            self._clean(step)
        if self._checkpointer is None:
            self._checkpointer = store.orbax_checkpointer(asynchronous=True)
        copies = {name: jnp.copy(x) for name, x in arrays.items()}  # the next step donates the originals
        self._io.submit(self._write, path, copies, record)
        return path

    def _write(self, path: str, arrays: dict, record: dict) -> None:
        """Background: orbax's save and commit of `arrays`, then (process 0) the sealed meta.json and pruning."""
        try:
            if arrays:
                self._checkpointer.save(os.path.join(path, store.ARRAYS_DIR), args=store.save_args(arrays))
                self._checkpointer.wait_until_finished()
            if store.is_primary():
                os.makedirs(path, exist_ok=True)
                store.write_meta(path, record)
                self._prune()
        except Exception as e:  # orbax/tensorstore: OSError, ValueError, ... for a write that failed
            self._discard(path)
            raise store.write_error(path, e) from None

    def _discard(self, path: str) -> None:
        """Remove what a failed save left (freeing its space); the checkpoints before it stay."""
        if store.is_primary():
            store.remove(path)

    def _clean(self, step: int) -> None:
        """Before writing `step` (under the lock): leftovers of killed saves and prunes, and any checkpoint at
        or after `step` (a later life of this run that is being redone, or one that did not verify)."""
        if not self._cleaned and os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                if name.startswith((".tmp-", ".trash-")):
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
            self._cleaned = True
        for s in self.all_steps():
            if s >= step:
                store.remove(self.path(s))

    def _prune(self) -> None:
        complete = self.steps()
        kept = set(complete[-self.keep:]) | {self.best_step()}
        newest = complete[-1] if complete else -1
        for step in self.all_steps():
            if step not in kept and step < newest:  # incomplete ones older than a complete one are leftovers
                store.remove(self.path(step))

    def wait(self) -> None:
        """Block until the pending save is committed; raise CheckpointWriteError if it failed."""
        self._io.wait()

    def close(self, release: bool = True) -> None:
        """Finish the pending save (raising its error) and release the directory's lock (unless not `release`:
        then whoever holds on to it releases it with `lock.release`)."""
        try:
            self._io.close()
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        finally:
            if release and store.is_primary():
                lock.release(self.directory, untouched=not self._saved)

    def restore(self, where, validate=None) -> tuple[dict, dict] | None:
        """The newest checkpoint that verifies, as (path -> array placed by `where(entry)`, metadata); None if
        there is none but incomplete ones (no meta.json: a save cut short).

        `validate(meta)` runs on each candidate's verified metadata before its arrays are read and may raise
        (e.g. CheckpointMismatchError: that refuses). A checkpoint that is incomplete, altered or unreadable is
        skipped with a warning; if complete ones exist and none verifies, CorruptCheckpointError says so.
        """
        problems = []
        for step in reversed(self.all_steps()):
            try:
                meta = store.read_meta(self.path(step))
                if validate is not None:
                    validate(meta)
                return store.restore(self.path(step), where, meta)
            except CorruptCheckpointError as e:
                if os.path.exists(os.path.join(self.path(step), store.META_FILE)):
                    problems.append(str(e))  # incomplete ones (a save cut short) do not stop a fresh start
                warnings.warn(f"{e}; falling back to an older checkpoint", RuntimeWarning, stacklevel=2)
        if problems:
            raise CorruptCheckpointError(f"no checkpoint in {self.directory} verifies ({'; '.join(problems)}); "
                                         "move the directory away to start afresh")
        return None

