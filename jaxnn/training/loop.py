"""The fit loop that `Trainer.fit` drives: the live `Run`, the callback hooks it calls, SIGTERM, bounded dispatch.

A callback sees the live `Run` (state, history, position, running statistics)
as `self.run`, which the loop sets (as Keras sets `self.model`); it stops
training by setting `run.stop_training = True` (and `run.stop_reason`), and may
replace `run.state` (to restore the best weights, to lower the learning rate).
Hooks, in the order the loop calls them, in jaxnn's form and in Keras's:

    on_train_begin(run)              on_train_begin(logs)     after set-up (ModelCheckpoint restores here)
    on_epoch_begin(run, epoch)       on_epoch_begin(epoch, logs)
    on_step_end(run, batch)          on_step_end(batch, logs) after every step; `run.step` is the global step
    on_log(run, logs)                on_log(logs)             every `log_every_steps` steps: running epoch means
    on_epoch_end(run, epoch, logs)   on_epoch_end(epoch, logs)
    on_interrupt(run)                on_interrupt(logs)       SIGTERM: save what is needed to resume
    on_train_end(run)                on_train_end(logs)       logs: the last epoch's

A hook takes jaxnn's form when its first parameter is called `run` or when it
cannot take Keras's arguments; otherwise Keras's (`logs` is `{}` where jaxnn has
none). The form is read from each hook's signature once per fit.

Callbacks run in list order, except that those with a higher `order` run later
(ModelCheckpoint runs last, so it saves what the others changed). A callback
whose state matters for an exact resume returns it from `state_dict` (plain
JSON values) and `arrays` (a pytree), and takes it back in `load_state_dict`.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import inspect
import signal
import threading
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxnn import checkpoint as ckpt, distributed, optimizers, validation
from jaxnn.training import members
from jaxnn.training.dispatch import AUTO, ChunkSizes
from jaxnn.training.guard import NonFinite, decode_guard
from jaxnn.training.history import History
from jaxnn.training.state import epoch_permutation, in_order
from jaxnn.training.steps import results

# Steps allowed in flight before the loop waits: bounds host run-ahead, and the
# all-reduce stalls DESIGN.md measured on simulated multi-device meshes (one
# device: a longer queue spares the host a wait every step or two).
MAX_STEPS_IN_FLIGHT, MAX_STEPS_IN_FLIGHT_ONE_DEVICE = 2, 8


class TrainingInterrupted(RuntimeError):
    """fit stopped on SIGTERM or Ctrl-C after saving a checkpoint; `.state` and `.history` are the run's at that
    point, `.signum` the signal."""

    def __init__(self, message: str, state, history, signum: int = signal.SIGTERM):
        super().__init__(message)
        self.state, self.history, self.signum = state, history, signum


@dataclasses.dataclass
class Run:
    """What callbacks see of a fit in progress."""

    state: Any
    history: History
    epochs: int
    steps_per_epoch: int
    stop_training: bool = False
    stop_reason: str | None = None
    nonfinite: NonFinite | None = None  # set with stop_reason when a NaN/inf stopped the run
    epoch: int = 0  # the current epoch, from 0
    position: int = 0  # steps done in the current epoch
    step: int = 0  # global step
    epoch_done: bool = False  # the current epoch's logs are in the history
    totals: Any = None  # running statistics of the current epoch (device arrays)
    guard: Any = None  # the non-finite guard (`guard.fresh_guard`) with check_finite, else {}
    callbacks: list = dataclasses.field(default_factory=list)
    log_keys: tuple = ()
    last_checkpoint: str | None = None
    members: int | None = None  # an ensemble's member count (`training.members`), else None
    active: np.ndarray | None = None  # members: which still train (EarlyStopping masks the others' updates)
    member_logs: list | None = None  # members: each member's logs of the last epoch end
    hooks: dict = dataclasses.field(default_factory=dict, repr=False)  # hook name -> callables taking (run, ...)
    _host: tuple = dataclasses.field(default=(None, None), repr=False)  # (a state, its host copy)

    def host_state(self) -> dict[str, np.ndarray]:
        """The TrainState copied to the host (path -> array), made once per state, so callbacks that
        need it at one epoch end (TensorBoard's histograms, ModelCheckpoint) share one copy."""
        state, host = self._host
        if state is not self.state:
            host = ckpt.flatten(self.state)
            self._host = (self.state, host)
        return host

    def call(self, hook: str, *args) -> None:
        """Call `hook` of every callback with jaxnn's arguments `(self, *args)` (see `bind_hooks`)."""
        for fn in self.hooks[hook]:
            fn(self, *args)

    def named_callbacks(self) -> dict[str, Callback]:
        """Callbacks by a stable name (`EarlyStopping`, `EarlyStopping_1`, ...) for checkpoint state."""
        names: dict[str, Callback] = {}
        for cb in self.callbacks:
            base = type(cb).__name__
            name, n = base, 0
            while name in names:
                n += 1
                name = f"{base}_{n}"
            names[name] = cb
        return names

    def resume_point(self) -> tuple[int, int]:
        """(epoch, steps done in it) to continue from if the run stopped now."""
        return (self.epoch + 1, 0) if self.epoch_done else (self.epoch, self.position)

    def find_nonfinite(self) -> NonFinite | None:
        """Why the run is no longer finite (see `guard.decode_guard`), or None. Syncs with the device.
        For an ensemble: the first member that is not."""
        if self.members is None:
            return decode_guard(self.guard, self.totals, self.step, self.epoch)
        guard, totals = jax.device_get((self.guard, self.totals))  # sliced on the host: no program per slice
        for m in range(self.members):
            found = decode_guard(members.member(guard, m), members.member(totals, m), self.step, self.epoch)
            if found is not None:
                return dataclasses.replace(found, member=m)
        return None

    def stop_nonfinite(self, found: NonFinite) -> None:
        """Stop training because of `found`; the History keeps it as `stop_reason` and `nonfinite`."""
        self.stop_training, self.stop_reason, self.nonfinite = True, str(found), found


class Callback:
    """Base class; override the hooks you need (each a no-op here), in jaxnn's form or Keras's (see above)."""

    order = 0
    monitor: str | None = None
    every_steps: int = 0  # > 0: acts every `every_steps` global steps, so fused chunks end at its multiples
    run: Run | None = None  # the live run, set by the fit loop

    def on_train_begin(self, run: Run) -> None: ...

    def on_epoch_begin(self, run: Run, epoch: int) -> None: ...

    def on_step_end(self, run: Run, step: int) -> None: ...

    def on_log(self, run: Run, logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None: ...

    def on_interrupt(self, run: Run) -> None: ...

    def on_train_end(self, run: Run) -> None: ...

    def state_dict(self, run: Run) -> dict:
        """Plain JSON values needed to resume this callback exactly."""
        return {}

    def arrays(self, run: Run):
        """A pytree of arrays needed to resume this callback exactly (None if none)."""
        return None

    def load_state_dict(self, run: Run, state: dict, arrays: dict[str, np.ndarray]) -> None:
        """Take back what `state_dict` and `arrays` saved (`arrays` as path -> array)."""


# Hook -> (jaxnn's argument count, run included; Keras's argument count; Keras's arguments from jaxnn's).
_FORMS = {
    "on_train_begin": (1, 1, lambda run: ({},)),
    "on_epoch_begin": (2, 2, lambda run, epoch: (epoch, {})),
    "on_step_end": (2, 2, lambda run, batch: (batch, {})),
    "on_log": (2, 1, lambda run, logs: (logs,)),
    "on_epoch_end": (3, 2, lambda run, epoch, logs: (epoch, logs)),
    "on_interrupt": (1, 1, lambda run: ({},)),
    "on_train_end": (1, 1, lambda run: ({k: v[-1] for k, v in run.history.history.items() if v},)),
}
# Keras hooks the loop never calls, and what to write instead.
_UNCALLED = {"on_batch_begin": "on_epoch_begin or on_step_end", "on_batch_end": "on_step_end or on_log",
             "on_train_batch_begin": "on_epoch_begin or on_step_end",
             "on_train_batch_end": "on_step_end (or on_log, which gets the running logs)"}


def _takes_run(fn, hook: str, owner: str) -> bool:
    """Whether hook `fn` takes jaxnn's arguments (run first) rather than Keras's."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to read (a builtin): jaxnn's form
        return True
    params = list(signature.parameters.values())
    if params and params[0].name == "run":
        return True
    jaxnn_count, keras_count, _ = _FORMS[hook]
    for takes_run, count in ((False, keras_count), (True, jaxnn_count)):
        try:
            signature.bind(*[None] * count)
            return takes_run
        except TypeError:
            pass
    raise ValueError(f"{owner}.{hook}{signature} takes neither Keras's {keras_count} argument(s) nor jaxnn's "
                     f"{jaxnn_count} (run first)")


def bind_hooks(run: Run) -> dict[str, list[Callable]]:
    """Each hook's callables, all taking jaxnn's arguments `(run, ...)`; sets `cb.run` on every callback."""
    hooks = {hook: [] for hook in _FORMS}
    for cb in run.callbacks:
        cb.run = run
        owner = type(cb).__name__
        for keras_hook, instead in _UNCALLED.items():
            if callable(getattr(cb, keras_hook, None)):
                raise ValueError(f"{owner} defines {keras_hook}, which jaxnn's fit never calls: use {instead}")
        for hook, (_, _, keras_args) in _FORMS.items():
            fn = getattr(cb, hook)
            if getattr(fn, "__func__", None) is getattr(Callback, hook):  # the base class's no-op
                continue
            if _takes_run(fn, hook, owner):
                hooks[hook].append(fn)
            else:
                hooks[hook].append(lambda run, *args, fn=fn, to_keras=keras_args: fn(*to_keras(run, *args)))
    return hooks


class StepsInFlight:
    """Bounded async dispatch: `push` each step's output; once more than `limit` are in flight, it blocks
    until the oldest is ready, so the host never runs far ahead of the device."""

    def __init__(self, limit: int | None = None):
        if limit is None:
            limit = MAX_STEPS_IN_FLIGHT_ONE_DEVICE if jax.device_count() == 1 else MAX_STEPS_IN_FLIGHT
        self.limit, self._queue = limit, collections.deque()

    def push(self, tree) -> None:
        """Record a step's output (a pytree of device arrays); wait on the oldest beyond `limit`."""
        self._queue.append(tree)
        if len(self._queue) > self.limit:
            jax.block_until_ready(self._queue.popleft())


class SigtermFlag:
    """Within the block, SIGTERM and Ctrl-C (SIGINT) only set `requested` and `signum` (checked between steps);
    a repeated signal changes nothing, so the save it leads to completes. The old handlers come back after.

    A stop signal that arrived before the block (`SigtermFlag.pending`, set by train.py's own handler, whose
    exception Python may have dropped inside a garbage-collector callback) counts as requested at once.
    `stop(sync_point)` says whether to stop now. In a multi-process run the processes agree at sync points
    (the same steps on every process: log steps and epoch ends) through a small all-gather of their flags,
    so a SIGTERM on any process stops all of them at the same step; `stopped` keeps the answer.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    pending: int | None = None
    _agreed = False

    @property
    def stopped(self) -> bool:
        return self.requested if self._alone else self._agreed

    def stop(self, sync_point: bool) -> bool:
        if not self._alone and sync_point and not self._agreed:
            self._agreed = bool(np.any(multihost_utils.process_allgather(np.int32(self.requested))))
        return self.stopped

    def __enter__(self):
        self._alone = jax.process_count() == 1
        self.signum = SigtermFlag.pending
        self.requested = self.signum is not None
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        self.requested = True
        self.signum = self.signum or signum

    @property
    def name(self) -> str:
        if self.signum is None:  # agreed with a process that got the signal
            return "a stop signal on another process"
        return {signal.SIGINT: "Ctrl-C (SIGINT)"}.get(self.signum, signal.Signals(self.signum).name)

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


def fit_loop(run: Run, step: Callable, zero_totals: Callable, *, metrics: Sequence, validate: Callable | None,
             num_examples: int, shuffle: bool, log_every_steps: int, watchdog_s: float | None = None,
             steps_per_dispatch=AUTO) -> None:
    """Run `run.epochs` epochs of `step` with the callbacks' hooks; raises TrainingInterrupted after a SIGTERM.

    `step(state, totals, guard, perm, index, count)` runs the `count` batches from
    `perm[index*b:(index+1)*b]` on as one call (`steps_per_dispatch`: K, "auto" or a
    `dispatch.ChunkSizes` carried over from an earlier fit);
    `zero_totals(state)` gives an epoch's starting statistics; `validate(state)`
    the validation logs (without the `val_` prefix) of an epoch end. In a multi-process
    run a failed collective ends the process with one line naming the step, and with
    `watchdog_s` so do steps that stop finishing (paused while compiling, validating
    and in the callbacks, which checkpoint).
    """
    for cb in run.callbacks:
        validation.non_negative_int(f"{type(cb).__name__}.every_steps", cb.every_steps)
        if cb.monitor is not None and cb.monitor not in run.log_keys:
            raise ValueError(f"{type(cb).__name__} monitors {cb.monitor!r}, which this run never produces; "
                             f"it produces: {', '.join(run.log_keys)}")
    run.hooks = bind_hooks(run)
    where = lambda: f"step {run.step}"
    with contextlib.ExitStack() as stack:
        sigterm = stack.enter_context(SigtermFlag())
        stack.enter_context(distributed.exit_on_collective_error(where))
        watchdog = stack.enter_context(distributed.StepWatchdog(watchdog_s, where)) if watchdog_s else None
        paused = watchdog.paused if watchdog is not None else contextlib.nullcontext
        with paused():
            run.call("on_train_begin")
        sizes = (steps_per_dispatch if isinstance(steps_per_dispatch, ChunkSizes)
                 else ChunkSizes(steps_per_dispatch, run.steps_per_epoch))
        every = [cb.every_steps for cb in run.callbacks if cb.every_steps]
        if every:
            sizes.fit_within(min(every))
        while run.epoch < run.epochs and not run.stop_training and not sigterm.stopped:
            _fit_epoch(run, step, metrics, num_examples, shuffle, log_every_steps, sigterm, watchdog, sizes)
            if run.stop_training or sigterm.stop(sync_point=True):
                break
            with paused():
                _end_epoch(run, metrics, validate, zero_totals)
        with paused():
            if sigterm.stopped:
                run.call("on_interrupt")
                saved = (f"checkpoint saved to {run.last_checkpoint}" if run.last_checkpoint
                         else "no checkpoint was saved")
                run.stop_reason = (f"Stopped by {sigterm.name} at step {run.step} (epoch {run.epoch + 1}, "
                                   f"step {run.position} of {run.steps_per_epoch}); {saved}")
            run.history.stop_reason, run.history.nonfinite = run.stop_reason, run.nonfinite
            run.call("on_train_end")
    if sigterm.stopped:
        raise TrainingInterrupted(run.stop_reason, run.state, run.history, sigterm.signum or signal.SIGTERM)


def _end_epoch(run: Run, metrics, validate, zero_totals) -> None:
    """The epoch's logs (validation included) into the History, the callbacks' epoch end, the next epoch's totals.

    For an ensemble each member's logs go to its own History (while it trains) and the mean to the run's.
    """
    stats = jax.device_get(run.totals)
    lr = optimizers.learning_rate(run.state.opt_state)
    if run.members is None:
        logs = results(metrics, stats)
        if validate is not None:
            logs.update({f"val_{k}": v for k, v in validate(run.state).items()})
        if lr is not None:
            logs["lr"] = float(lr)
    else:
        member_logs = members.each_member(functools.partial(results, metrics), stats, run.members)
        if validate is not None:
            for logs, val in zip(member_logs, validate(run.state)):
                logs.update({f"val_{k}": v for k, v in val.items()})
        if lr is not None:
            for logs, value in zip(member_logs, np.asarray(lr)):
                logs["lr"] = float(value)
        for history, logs, active in zip(run.history.members, member_logs, run.active):
            if active:
                history.append(run.epoch, logs)
        run.member_logs, logs = member_logs, members.mean_logs(member_logs)
    run.history.append(run.epoch, logs)
    run.epoch_done = True
    run.call("on_epoch_end", run.epoch, logs)
    run.epoch, run.position, run.epoch_done = run.epoch + 1, 0, False
    run.totals = zero_totals(run.state)


def running_logs(run: Run, metrics) -> dict[str, float]:
    """The running means of the epoch so far (for an ensemble: their mean over members). Syncs with the device."""
    stats = jax.device_get(run.totals)
    if run.members is None:
        return results(metrics, stats)
    return members.mean_logs(members.each_member(functools.partial(results, metrics), stats, run.members))


def _permutations(key, epoch: int, n: int, shuffle: bool, count: int | None):
    """The epoch's order of the `n` examples: one per member (a row each) for an ensemble of `count`."""
    if not shuffle:
        return in_order(key, n)
    if count is None:
        return epoch_permutation(key, epoch, n)
    return jax.vmap(lambda k: epoch_permutation(k, epoch, n))(key)


def _fit_epoch(run: Run, step, metrics, num_examples, shuffle, log_every_steps, sigterm, watchdog,
               sizes: ChunkSizes) -> None:
    """The chunks of `run.epoch` from `run.position` on; stops early on SIGTERM, a stop request or NaN.

    A chunk ends at the epoch's end and at every multiple of a callback's `every_steps`;
    the logs, `on_step_end` (with the chunk's last batch index, as Keras's
    `steps_per_execution`) and the stop checks follow each chunk.
    """
    run.call("on_epoch_begin", run.epoch)
    perm = _permutations(run.state.key, run.epoch, num_examples, shuffle, run.members)
    # Fused chunks are long: two in flight keep the device busy and a stop within about a chunk.
    in_flight = StepsInFlight(MAX_STEPS_IN_FLIGHT if sizes.size > 1 else None)
    step_hooks, log_hooks = run.hooks["on_step_end"], run.hooks["on_log"]
    paused = watchdog.paused if watchdog is not None else contextlib.nullcontext
    running = contextlib.nullcontext()
    every = [cb.every_steps for cb in run.callbacks if cb.every_steps]
    first = run.position
    while run.position < run.steps_per_epoch:
        count = min(sizes.size, run.steps_per_epoch - run.position, *(n - run.step % n for n in every))
        probing = sizes.probing and count == sizes.size  # a probe cut short is an ordinary chunk: no wait
        timed = probing and sizes.timed
        if timed:
            jax.block_until_ready(run.totals)
            started = time.perf_counter()
        compiles = run.position == first or (sizes.probing and not sizes.timed)  # "auto" compiles its loop mid-epoch
        with paused() if compiles else running:
            run.state, run.totals, run.guard = step(run.state, run.totals, run.guard, perm, run.position, count)
            if probing:
                jax.block_until_ready(run.totals)
                sizes.observe(count, time.perf_counter() - started if timed else None)
        run.step, run.position = run.step + count, run.position + count
        in_flight.push(run.totals)
        if watchdog is not None:
            watchdog.beat()
        log_step = run.step // log_every_steps > (run.step - count) // log_every_steps
        if log_step:
            if _stopped_nonfinite(run):
                return
            if log_hooks:  # the fetch waits for the device: only when someone reads the logs
                run.call("on_log", running_logs(run, metrics))
        if step_hooks:
            with paused():  # callbacks may checkpoint
                for hook in step_hooks:
                    hook(run, run.position - 1)
        if run.stop_training or sigterm.stop(sync_point=log_step):
            return
    _stopped_nonfinite(run)


def _stopped_nonfinite(run: Run) -> bool:
    """With the guard of check_finite: stop the run if it went non-finite."""
    if not run.guard:
        return False
    found = run.find_nonfinite()
    if found is not None:
        run.stop_nonfinite(found)
    return found is not None
