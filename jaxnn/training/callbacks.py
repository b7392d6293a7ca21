"""Keras's callbacks for the fit loop (the hooks and `Run` they get: `loop.py`; `ModelCheckpoint`: `checkpointing.py`)."""
from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import checkpoint as ckpt, optimizers, validation
from jaxnn.io import Background, write_atomic
from jaxnn.training.checkpointing import ModelCheckpoint
from jaxnn.training.guard import NonFinite
from jaxnn.training.history import History, plot_history
from jaxnn.training.loop import Callback, Run
from jaxnn.training.monitor import improved, resolve_mode

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "LambdaCallback", "ModelCheckpoint", "PlotHistory",
           "ProgressLogger", "ReduceLROnPlateau", "Run", "TensorBoard", "TerminateOnNaN", "histogram", "resolve_mode"]


def _format_logs(logs: dict[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4g}" if k == "lr" else f"{k}: {v:.4f}" for k, v in logs.items())


class ProgressLogger(Callback):
    """Per-epoch progress: a tqdm bar with live metrics, steps/s and ETA on a terminal; one line per epoch otherwise."""

    BAR_INTERVAL_S = 0.1

    def __init__(self, stream=None, bar: bool | None = None, print_fn: Callable[[str], None] | None = None):
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.print_fn = print_fn or print
        self._pbar, self._interrupted = None, False

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

    def on_interrupt(self, run):
        self._interrupted = True  # the TrainingInterrupted that follows carries the stop line

    def on_train_end(self, run):
        self._close()
        if run.stop_reason and not self._interrupted:
            self.print_fn(run.stop_reason)
        self._interrupted = False


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs (Keras's defaults).

    With `restore_best_weights`, the run ends with the best epoch's parameters
    (and model state) whatever ended it: patience, the last epoch, or another stop.
    For an ensemble each member is watched on its own logs: a member that stops
    gets no more updates (the run's `active` mask) while the others train, and
    the run stops when all have; best weights are kept per member.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, mode: str = "auto",
                 restore_best_weights: bool = False):
        validation.non_negative_int("patience", patience)
        self.monitor, self.min_delta, self.patience = monitor, abs(min_delta), patience
        self.mode = resolve_mode(monitor, mode)
        self.restore_best_weights = restore_best_weights
        self.on_train_begin(None)

    # Keras's attributes: one value, or one per member for an ensemble.
    wait = property(lambda self: self._wait if self._members else self._wait[0])
    best = property(lambda self: self._best if self._members else self._best[0])
    best_epoch = property(lambda self: self._best_epoch if self._members else self._best_epoch[0])

    def on_train_begin(self, run):
        self._members = None if run is None else run.members
        count = self._members or 1
        self._wait, self._best, self._best_epoch = [0] * count, [None] * count, [None] * count
        self.best_weights = None

    def on_epoch_end(self, run, epoch, logs):
        member_logs = [logs] if run.members is None else run.member_logs
        active = [True] if run.members is None else run.active
        improved_now = np.zeros(len(member_logs), bool)
        for m, (member_log, training) in enumerate(zip(member_logs, active)):
            if not training:
                continue
            current = member_log[self.monitor]
            self._wait[m] += 1
            if improved(self.mode, current, self._best[m], self.min_delta):
                self._best[m], self._best_epoch[m], self._wait[m] = current, epoch, 0
                improved_now[m] = True
            elif self._wait[m] >= self.patience:
                active[m] = False
        if self.restore_best_weights and improved_now.any():
            self._keep_best(run, improved_now)
        if run.members is None and not active[0]:
            run.stop_training = True
            run.stop_reason = (f"Early stopping at epoch {epoch + 1}: {self.monitor} has not improved for "
                               f"{_epochs(self._wait[0])} (best {self._best[0]:.4f} at epoch {self._best_epoch[0] + 1})")
        elif run.members is not None and not any(active):
            run.stop_training = True
            run.stop_reason = (f"Early stopping at epoch {epoch + 1}: {self.monitor} has not improved for "
                               f"{_epochs(max(self.patience, 1))} in any of the {run.members} members")

    def _keep_best(self, run, improved_now) -> None:
        current = {"params": run.state.params, "model_state": run.state.model_state}
        if self.best_weights is None or run.members is None:
            self.best_weights = jax.tree_util.tree_map(jnp.copy, current)
            return
        mask = jnp.asarray(improved_now)
        self.best_weights = jax.tree_util.tree_map(
            lambda new, old: jnp.where(mask.reshape(-1, *[1] * (new.ndim - 1)), new, old), current, self.best_weights)

    def on_train_end(self, run):
        if self.restore_best_weights and self.best_weights is not None:
            run.state = run.state.replace(**self.best_weights)

    def state_dict(self, run):
        if run.members is None:
            return {"wait": self._wait[0], "best": self._best[0], "best_epoch": self._best_epoch[0]}
        return {"wait": self._wait, "best": self._best, "best_epoch": self._best_epoch, "active": run.active.tolist()}

    def arrays(self, run):
        return self.best_weights

    def load_state_dict(self, run, state, arrays):
        if run.members is None:
            self._wait, self._best = [state.get("wait", 0)], [state.get("best")]
            self._best_epoch = [state.get("best_epoch")]
        else:
            self._wait, self._best, self._best_epoch = state["wait"], state["best"], state["best_epoch"]
            run.active[:] = state["active"]
        like = {"params": run.state.params, "model_state": run.state.model_state}
        self.best_weights = ckpt.unflatten(arrays, like, where="EarlyStopping's best weights") if arrays else None


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` stalls for `patience` epochs (Keras's defaults).

    Needs an optimizer that exposes a constant learning rate (one built by name).
    For an ensemble the mean logs decide, and every member's rate is multiplied.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, mode: str = "auto",
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        validation.non_negative_int("ReduceLROnPlateau patience", patience)
        validation.non_negative_int("ReduceLROnPlateau cooldown", cooldown)
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
        if improved(self.mode, current, self.best, self.min_delta):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = np.asarray(optimizers.learning_rate(run.state.opt_state))  # one per member in an ensemble
                if np.any(old > self.min_lr):
                    new = np.maximum(old * self.factor, np.minimum(old, self.min_lr))
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
            run.stop_nonfinite(run.find_nonfinite() or NonFinite(run.step, None, loss=loss, exact=False))

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

    A matplotlib redraw is costly beside short epochs, so it happens at an epoch
    end only if `min_interval_s` seconds passed since the last one (or the
    start), and always at the end of training. `min_interval_s=0` redraws at every epoch end.
    """

    def __init__(self, path: str | os.PathLike, min_interval_s: float = 10.0):
        self.path, self.min_interval_s = os.fspath(path), min_interval_s
        self._io = Background()

    def _draw(self, run) -> None:
        self._last, self._stale = time.monotonic(), False
        h = run.history  # copied: training goes on while the drawing is made
        snapshot = History(h.history, h.epoch, None if h.members is None else [History(m.history, m.epoch)
                                                                                for m in h.members])
        self._io.submit(self._write, snapshot)

    def flush(self) -> None:
        """Wait until the PNG holds the last requested drawing."""
        self._io.wait()

    def _write(self, history: History) -> None:
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
    """A callback from plain functions, each taking the arguments of the hook it replaces, in Keras's form
    (`on_epoch_end=lambda epoch, logs: ...`) or jaxnn's (`lambda run, epoch, logs: ...`); see `loop.py`."""

    def __init__(self, on_train_begin=None, on_epoch_begin=None, on_step_end=None, on_log=None,
                 on_epoch_end=None, on_train_end=None):
        hooks = dict(on_train_begin=on_train_begin, on_epoch_begin=on_epoch_begin, on_step_end=on_step_end,
                     on_log=on_log, on_epoch_end=on_epoch_end, on_train_end=on_train_end)
        for name, fn in hooks.items():
            if fn is not None:
                if not callable(fn):
                    raise ValueError(f"LambdaCallback {name} must be callable, got {fn!r}")
                setattr(self, name, fn)


def histogram(values: np.ndarray, bins: int = 30) -> dict | None:
    """A TensorBoard histogram of `values`' finite entries in `bins` equal buckets between their min and max;
    None if none is finite (a run gone NaN: its error comes from the fit, not from here).

    TensorBoard shows about 30 buckets whatever it is given, and equal buckets
    are binned in one pass (tensorboardX's default exponential buckets are
    searched per value). A bucket counts the values in (previous limit, limit];
    an empty first bucket at the minimum makes the range closed on the left.
    """
    values = np.asarray(values, np.float32).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
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
        self._io = Background()  # histograms are binned off the training thread

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
            bucketed = histogram(values, self.bins)
            if bucketed is not None:
                self._writer.add_histogram_raw(f"params/{path}", **bucketed, global_step=step)
        self._writer.flush()

    def on_train_end(self, run):
        self._io.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
