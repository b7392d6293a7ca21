"""Callbacks: objects the fit loop calls at train, epoch, step and log boundaries (Keras's set).

Each hook gets the live `Run` (state, history, position, running statistics);
a callback stops training by setting `run.stop_training = True` (and
`run.stop_reason`), and may replace `run.state` (to restore the best weights,
to lower the learning rate). Hooks, in the order the loop calls them:

    on_train_begin(run)           after set-up (ModelCheckpoint restores here)
    on_epoch_begin(run, epoch)
    on_step_end(run, batch)       after every step; `run.step` is the global step
    on_log(run, logs)             every `log_every_steps` steps: running epoch means
    on_epoch_end(run, epoch, logs)
    on_interrupt(run)             SIGTERM: save what is needed to resume
    on_train_end(run)

Callbacks run in list order, except that those with a higher `order` run later
(ModelCheckpoint runs last, so it saves what the others changed). A callback
whose state matters for an exact resume returns it from `state_dict` (plain
JSON values) and `arrays` (a pytree), and takes it back in `load_state_dict`.
"""
from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import io
import math
import os
import sys
import time
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import checkpoint as ckpt, validation
from jaxnn import optimizers
from jaxnn.checkpoint_writer import shared_writer
from jaxnn.io import write_atomic
from jaxnn.training.history import History, plot_history


@dataclasses.dataclass
class Run:
    """What callbacks see of a fit in progress."""

    trainer: Any
    state: Any
    history: History
    epochs: int
    steps_per_epoch: int
    stop_training: bool = False
    stop_reason: str | None = None
    epoch: int = 0  # the current epoch, from 0
    position: int = 0  # steps done in the current epoch
    step: int = 0  # global step
    epoch_done: bool = False  # the current epoch's logs are in the history
    totals: Any = None  # running statistics of the current epoch (device arrays)
    guard: Any = None  # first non-finite step and its flags, with check_finite
    callbacks: list = dataclasses.field(default_factory=list)
    log_keys: tuple = ()
    last_checkpoint: str | None = None
    _host: tuple = dataclasses.field(default=(None, None), repr=False)  # (a state, its host copy)

    def host_state(self) -> dict[str, np.ndarray]:
        """The TrainState copied to the host (path -> array), made once per state, so callbacks that
        need it at one epoch end (TensorBoard's histograms, ModelCheckpoint) share one copy."""
        state, host = self._host
        if state is not self.state:
            host = ckpt.flatten(self.state)
            self._host = (self.state, host)
        return host

    def named_callbacks(self) -> dict[str, "Callback"]:
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

    def nonfinite(self) -> str | None:
        """Why the run is no longer finite (step and first bad gradient path), or None. Syncs with the device."""
        if self.guard:
            bad_step = int(jax.device_get(self.guard["step"]))
            if bad_step >= 0:
                flags = jax.device_get({"loss": self.guard["loss"], "grads": self.guard["grads"]})
                bad = [path for path, flag in ckpt.flatten(flags["grads"]).items() if flag]
                what = f"gradient (first: {bad[0]})" if bad else "loss"
                also = " and loss" if bad and flags["loss"] else ""
                return (f"non-finite {what}{also} at step {bad_step} (epoch {self.epoch + 1}); "
                        "stopped with the last good parameters")
        loss = float(jax.device_get(self.totals["loss"]["total"]))
        if not math.isfinite(loss):
            return f"non-finite loss ({loss}) by step {self.step} (epoch {self.epoch + 1})"
        return None


class Callback:
    """Base class; override the hooks you need (each a no-op here)."""

    order = 0
    monitor: str | None = None

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


class _Background:
    """One worker thread running file-writing jobs in order, at most one pending, so that slow I/O
    (orbax, matplotlib) overlaps the training steps; `wait` re-raises a job's error in the loop."""

    def __init__(self):
        self._executor, self._pending = None, None

    def submit(self, fn, *args) -> None:
        self.wait()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxnn-io")
        self._pending = self._executor.submit(fn, *args)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown()
                self._executor = None


def _format_logs(logs: dict[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4g}" if k == "lr" else f"{k}: {v:.4f}" for k, v in logs.items())


def resolve_mode(monitor: str, mode: str) -> str:
    """Keras's 'auto': maximise accuracy-like metrics, minimise the rest."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor or monitor.startswith("fmeasure") else "min"
    return mode


def _improved(mode: str, current: float, best: float | None, min_delta: float) -> bool:
    if best is None:
        return True
    return current < best - min_delta if mode == "min" else current > best + min_delta


class ProgressLogger(Callback):
    """Per-epoch progress: a tqdm bar with live metrics, steps/s and ETA on a terminal; one line per epoch otherwise."""

    BAR_INTERVAL_S = 0.1

    def __init__(self, stream=None, bar: bool | None = None, print_fn: Callable[[str], None] | None = None):
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.print_fn = print_fn or print
        self._pbar = None

    def on_epoch_begin(self, run, epoch):
        self._start, self._first_step, self._shown = time.perf_counter(), run.position, 0.0
        if self.bar:
            from tqdm.auto import tqdm

            self._pbar = tqdm(total=run.steps_per_epoch, initial=run.position, desc=f"Epoch {epoch + 1}/{run.epochs}",
                              unit="step", file=self.stream, leave=False, dynamic_ncols=True)

    def on_step_end(self, run, step):
        # A tqdm update per step costs tens of microseconds of Python; a clock read is far cheaper.
        if self._pbar is not None and (now := time.monotonic()) - self._shown >= self.BAR_INTERVAL_S:
            self._pbar.update(run.position - self._pbar.n)
            self._shown = now

    def on_log(self, run, logs):
        if self._pbar is not None:
            self._pbar.set_postfix_str(_format_logs(logs))

    def _close(self):
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    def on_epoch_end(self, run, epoch, logs):
        self._close()
        seconds = time.perf_counter() - self._start
        rate = (run.position - self._first_step) / max(seconds, 1e-9)
        self.print_fn(f"Epoch {epoch + 1}/{run.epochs} - {seconds:.1f}s - {rate:.0f} steps/s - {_format_logs(logs)}")

    def on_train_end(self, run):
        self._close()
        if run.stop_reason:
            self.print_fn(run.stop_reason)


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs (Keras's defaults).

    With `restore_best_weights`, the run ends with the best epoch's parameters
    (and model state) whatever ended it: patience, the last epoch, or another stop.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, mode: str = "auto",
                 restore_best_weights: bool = False):
        validation.non_negative_int("patience", patience)
        self.monitor, self.min_delta, self.patience = monitor, abs(min_delta), patience
        self.mode = resolve_mode(monitor, mode)
        self.restore_best_weights = restore_best_weights
        self.on_train_begin(None)

    def on_train_begin(self, run):
        self.wait, self.best, self.best_epoch, self.best_weights = 0, None, None, None

    def on_epoch_end(self, run, epoch, logs):
        current = logs[self.monitor]
        self.wait += 1
        if _improved(self.mode, current, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = jax.tree_util.tree_map(
                    jnp.copy, {"params": run.state.params, "model_state": run.state.model_state})
        elif self.wait >= self.patience:
            run.stop_training = True
            run.stop_reason = (f"Early stopping at epoch {epoch + 1}: {self.monitor} has not improved for "
                               f"{self.wait} epochs (best {self.best:.4f} at epoch {self.best_epoch + 1})")

    def on_train_end(self, run):
        if self.restore_best_weights and self.best_weights is not None:
            run.state = run.state.replace(**self.best_weights)

    def state_dict(self, run):
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch}

    def arrays(self, run):
        return self.best_weights

    def load_state_dict(self, run, state, arrays):
        self.wait, self.best, self.best_epoch = state.get("wait", 0), state.get("best"), state.get("best_epoch")
        like = {"params": run.state.params, "model_state": run.state.model_state}
        self.best_weights = ckpt.unflatten(arrays, like, where="EarlyStopping's best weights") if arrays else None


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` stalls for `patience` epochs (Keras's defaults).

    Needs an optimizer that exposes a constant learning rate (one built by name).
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, mode: str = "auto",
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        self.monitor, self.factor, self.patience = monitor, factor, patience
        self.mode, self.min_delta = resolve_mode(monitor, mode), min_delta
        self.cooldown, self.min_lr = cooldown, min_lr

    def on_train_begin(self, run):
        self.wait, self.best, self.cooldown_counter = 0, None, 0
        lr = optimizers.learning_rate(run.state.opt_state)
        optimizers.set_learning_rate(run.state.opt_state, 0.0 if lr is None else lr)  # fails now if it can't later

    def on_epoch_end(self, run, epoch, logs):
        current = logs[self.monitor]
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if _improved(self.mode, current, self.best, self.min_delta):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(optimizers.learning_rate(run.state.opt_state))
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    run.state = run.state.replace(opt_state=optimizers.set_learning_rate(run.state.opt_state, new))
                    self.cooldown_counter, self.wait = self.cooldown, 0

    def state_dict(self, run):
        return {"wait": self.wait, "best": self.best, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, run, state, arrays):
        self.wait, self.best = state.get("wait", 0), state.get("best")
        self.cooldown_counter = state.get("cooldown_counter", 0)


class TerminateOnNaN(Callback):
    """Stop as soon as the running loss is NaN or inf (checked at each log and epoch end)."""

    def _check(self, run, loss):
        if not math.isfinite(loss):
            run.stop_training = True
            run.stop_reason = run.nonfinite() or f"non-finite loss ({loss}) by step {run.step}"

    def on_log(self, run, logs):
        self._check(run, logs["loss"])

    def on_epoch_end(self, run, epoch, logs):
        self._check(run, logs["loss"])


class CSVLogger(Callback):
    """The history as CSV (`epoch` then one column per key), rewritten atomically each epoch."""

    def __init__(self, filename: str | os.PathLike, separator: str = ","):
        self.filename, self.separator = os.fspath(filename), separator

    def on_epoch_end(self, run, epoch, logs):
        hist = run.history.history
        keys = list(hist)
        out = io.StringIO()
        writer = csv.writer(out, delimiter=self.separator, lineterminator="\n")
        writer.writerow(["epoch", *keys])
        for i, e in enumerate(run.history.epoch):
            writer.writerow([e, *(repr(hist[k][i]) if i < len(hist[k]) else "" for k in keys)])
        os.makedirs(os.path.dirname(os.path.abspath(self.filename)), exist_ok=True)
        write_atomic(self.filename, out.getvalue())


class PlotHistory(Callback):
    """Loss and metric curves (`plot_history`) redrawn into a PNG at epoch ends, off the training thread.

    A redraw costs ~0.1 s of CPU (matplotlib), a lot beside epochs of a second
    or two, so it happens at an epoch end only if `min_interval_s` seconds
    passed since the last one (or the start), and always at the end of
    training; with long epochs that is every epoch. `min_interval_s=0` redraws at every epoch end.
    """

    def __init__(self, path: str | os.PathLike, min_interval_s: float = 10.0):
        self.path, self.min_interval_s = os.fspath(path), min_interval_s
        self._io = _Background()

    def _draw(self, run) -> None:
        self._last, self._stale = time.monotonic(), False
        snapshot = {k: list(v) for k, v in run.history.history.items()}
        self._io.submit(self._write, snapshot)

    def flush(self) -> None:
        """Wait until the PNG holds the last requested drawing."""
        self._io.wait()

    def _write(self, history: dict) -> None:
        directory, name = os.path.split(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".tmp-{name}")
        plot_history(history, tmp)
        os.replace(tmp, self.path)

    def on_train_begin(self, run):
        self._last, self._stale = time.monotonic(), False

    def on_epoch_end(self, run, epoch, logs):
        self._stale = True
        last_epoch = run.epoch + 1 >= run.epochs
        if last_epoch or time.monotonic() - self._last >= self.min_interval_s:
            self._draw(run)

    def on_train_end(self, run):
        try:
            if self._stale:
                self._draw(run)
        finally:
            self._io.close()


class LambdaCallback(Callback):
    """A callback from plain functions, each taking the same arguments as the hook it replaces."""

    def __init__(self, on_train_begin=None, on_epoch_begin=None, on_step_end=None, on_log=None,
                 on_epoch_end=None, on_train_end=None):
        hooks = dict(on_train_begin=on_train_begin, on_epoch_begin=on_epoch_begin, on_step_end=on_step_end,
                     on_log=on_log, on_epoch_end=on_epoch_end, on_train_end=on_train_end)
        for name, fn in hooks.items():
            if fn is not None:
                if not callable(fn):
                    raise ValueError(f"LambdaCallback {name} must be callable, got {fn!r}")
                setattr(self, name, fn)


def histogram(values: np.ndarray, bins: int = 30) -> dict:
    """A TensorBoard histogram of `values` in `bins` equal buckets between their min and max.

    TensorBoard shows about 30 buckets whatever it is given, and equal buckets
    are binned in one pass (a third of the CPU time of tensorboardX's default
    of ~1,500 exponential buckets, which are searched per value). A bucket
    counts the values in (previous limit, limit]; an empty first bucket at the
    minimum makes the range closed on the left.
    """
    values = np.asarray(values, np.float32).reshape(-1)
    lo, hi = float(values.min()), float(values.max())
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi) if hi > lo else (lo - 0.5, lo + 0.5))
    return {"min": lo, "max": hi, "num": int(values.size), "sum": float(values.sum(dtype=np.float64)),
            "sum_squares": float(np.dot(values, values)), "bucket_limits": edges.tolist(),
            "bucket_counts": [0, *counts.tolist()]}


class TensorBoard(Callback):
    """TensorBoard event files in `log_dir`: scalars per log interval and per epoch, weight histograms per epoch.

    Tags: `batch/<key>` (running epoch means, x = global step), `epoch/<key>`
    (x = epoch number, `lr` included) and `params/<layer>/<name>` (weight
    histograms every `histogram_freq` epochs, 0 for none, in `bins` buckets).
    """

    def __init__(self, log_dir: str | os.PathLike, histogram_freq: int = 1, bins: int = 30):
        for field, value, least in (("histogram_freq", histogram_freq, 0), ("bins", bins, 1)):
            validation.integer(f"TensorBoard {field}", value, least)
        self.log_dir, self.histogram_freq, self.bins = os.fspath(log_dir), histogram_freq, bins
        self._writer = None
        self._io = _Background()  # histograms are binned off the training thread

    def on_train_begin(self, run):
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(self.log_dir, flush_secs=30)

    def on_log(self, run, logs):
        for k, v in logs.items():
            self._writer.add_scalar(f"batch/{k}", v, run.step)

    def on_epoch_end(self, run, epoch, logs):
        for k, v in logs.items():
            self._writer.add_scalar(f"epoch/{k}", v, epoch + 1)
        if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0:
            params = {p[len("params/"):]: a for p, a in run.host_state().items() if p.startswith("params/")}
            self._io.submit(self._histograms, params, epoch + 1)

    def _histograms(self, params: dict[str, np.ndarray], step: int) -> None:
        for path, values in params.items():
            if values.size == 0:
                continue
            self._writer.add_histogram_raw(f"params/{path}", **histogram(values, self.bins), global_step=step)
        self._writer.flush()

    def on_train_end(self, run):
        self._io.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ModelCheckpoint(Callback):
    """Checkpoints for exact resume: every `every_steps` steps and each epoch end, the last `keep` plus the best.

    A checkpoint holds the TrainState, the epoch's running statistics, the
    position in the epoch, the History and every callback's state; on train
    begin (with `restore`) the newest one that verifies is restored, so a
    stopped run continues exactly where it was. `fingerprint` (plain JSON, e.g.
    the config) must equal the checkpoint's, else the run is refused naming the
    first differing field. `save_best_only` saves at epoch ends only, when
    `monitor` improved. A non-finite run is never saved.

    `writer` says where orbax writes: "process" (a child process shared by the
    whole program, `jaxnn.checkpoint_writer`, so the writes never hold the
    loop's GIL), "thread" (a thread of this process, as a multi-process run
    needs for orbax's coordination), or "auto": "process" when this is the only
    JAX process.
    """

    order = 100

    def __init__(self, directory: str | os.PathLike, *, monitor: str | None = "val_loss", mode: str = "auto",
                 save_best_only: bool = False, every_steps: int = 0, keep: int = 3, restore: bool = True,
                 fingerprint: dict | None = None, print_fn: Callable[[str], None] | None = print,
                 writer: str = "auto"):
        if writer not in ("auto", "process", "thread"):
            raise ValueError(f"writer must be 'auto', 'process' or 'thread', got {writer!r}")
        validation.integer("every_steps", every_steps, 0, "a non-negative integer (0: epoch ends only)")
        if save_best_only and monitor is None:
            raise ValueError("save_best_only needs a monitor")
        self.monitor, self.save_best_only, self.every_steps = monitor, save_best_only, every_steps
        self.mode = resolve_mode(monitor, mode) if monitor else None
        self.manager = ckpt.CheckpointManager(directory, keep=keep, best_mode=self.mode)
        self.restore, self.fingerprint, self.print_fn = restore, fingerprint, print_fn
        self.writer = writer
        self._io = _Background()

    def check_compatible(self) -> None:
        """Refuse (CheckpointMismatchError) if the newest checkpoint's fingerprint differs; reads metadata only."""
        meta = self.manager.latest_meta()
        if meta is not None:
            self._check_fingerprint(meta)

    def _check_fingerprint(self, meta: dict) -> None:
        if self.fingerprint is None:
            return
        saved = meta.get("fingerprint")
        field = _first_difference(saved, self.fingerprint)
        if field is not None:
            path, old, new = field
            raise ckpt.CheckpointMismatchError(
                f"{self.manager.directory} holds checkpoints of a different run: {path or 'config'} is {old!r} "
                f"there and {new!r} here; use another workdir, or move that one away")

    def on_train_begin(self, run):
        self.best = None
        if not self.restore:
            return
        where = f"checkpoint in {self.manager.directory}"

        def validate(meta):
            self._check_fingerprint(meta)
            spec = ckpt.saved_spec(meta)
            ckpt.check_structure(spec, run.state, "state/", where)
            ckpt.check_structure(spec, run.totals, "totals/", where)

        restored = self.manager.restore(validate)
        if restored is None:
            return
        flat, meta = restored
        run.state = ckpt.unflatten(flat, run.state, "state/", where)
        run.totals = ckpt.unflatten(flat, run.totals, "totals/", where)
        run.epoch, run.position, run.step = meta["epoch"], meta["position"], meta["step"]
        run.history.history = {k: list(v) for k, v in meta["history"]["history"].items()}
        run.history.epoch = list(meta["history"]["epoch"])
        run.stop_training = meta["stop_training"]
        self.best = meta.get("best")
        for name, cb in run.named_callbacks().items():
            prefix = f"callbacks/{name}/"
            arrays = {p[len(prefix):]: a for p, a in flat.items() if p.startswith(prefix)}
            cb.load_state_dict(run, meta["callbacks"].get(name, {}), arrays)
        if self.print_fn is not None:
            self.print_fn(f"Resuming from {os.path.basename(self.manager.path(meta['step']))}: epoch {run.epoch + 1}, "
                          f"step {run.position} of {run.steps_per_epoch} in the epoch (global step {run.step})")

    def save(self, run: Run, metric: float | None = None) -> str | None:
        """Checkpoint the run now (skipped, with a warning, if it is no longer finite).

        The arrays are copied to the host here (the step donates their device
        buffers); writing them happens in the background (see `writer`),
        finished before the next save and at the end of training.
        """
        reason = run.nonfinite()
        if reason is not None:
            warnings.warn(f"checkpoint at step {run.step} skipped: {reason}", RuntimeWarning, stacklevel=2)
            return None
        named = run.named_callbacks()
        callback_arrays = {name: a for name, cb in named.items() if (a := cb.arrays(run)) is not None}
        epoch, position = run.resume_point()
        meta = {"epoch": epoch, "position": position, "stop_training": run.stop_training, "best": self.best,
                "history": {"history": run.history.history, "epoch": run.history.epoch},
                "callbacks": {name: cb.state_dict(run) for name, cb in named.items()},
                "fingerprint": self.fingerprint}
        if run.epoch_done:  # the resume point is the next epoch's start, whose running totals are zero
            spec = ckpt.tree_spec(run.totals, "totals/")
            totals = {p: np.zeros(shape, jnp.dtype(dtype)) for p, (shape, dtype) in spec.items()}
        else:
            totals = ckpt.flatten(run.totals, "totals/")
        state = {f"state/{p}": a for p, a in run.host_state().items()}
        flat = {**ckpt.flatten({"callbacks": callback_arrays}), **state, **totals}  # flatten's (sorted) order
        if self.writer == "process" or (self.writer == "auto" and jax.process_count() == 1):
            self._io.submit(shared_writer().save, self.manager, run.step, flat, meta, metric)
        else:
            self._io.submit(self.manager.save, run.step, flat, meta, metric)
        run.last_checkpoint = self.manager.path(run.step)
        return run.last_checkpoint

    def on_step_end(self, run, step):
        if self.every_steps and run.step % self.every_steps == 0 and run.position < run.steps_per_epoch:
            if not self.save_best_only:
                self.save(run)

    def on_epoch_end(self, run, epoch, logs):
        current = logs.get(self.monitor) if self.monitor else None
        improved = current is not None and _improved(self.mode, current, self.best, 0.0)
        if improved:
            self.best = current
        if improved or not self.save_best_only:
            self.save(run, metric=current)

    def on_interrupt(self, run):
        self.save(run)
        self._io.wait()

    def on_train_end(self, run):
        self._io.close()


def _first_difference(old, new, path: str = ""):
    """(dotted path, old value, new value) of the first difference between two JSON trees, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(new) + [k for k in old if k not in new]:
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    return None if old == new else (path, old, new)
