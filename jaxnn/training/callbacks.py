"""Callbacks: objects the fit loop calls at train, epoch and step boundaries.

Each hook gets the live `Run` (state, history, logs, stop flag); a callback
stops training by setting `run.stop_training = True` and may replace
`run.state` (e.g. to restore the best weights).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable

from jaxnn.training.history import History


@dataclasses.dataclass
class Run:
    """What callbacks see of a fit in progress."""

    trainer: Any
    state: Any
    history: History
    epochs: int
    steps_per_epoch: int
    stop_training: bool = False


class Callback:
    """Base class; override the hooks you need (each a no-op here)."""

    def on_train_begin(self, run: Run) -> None: ...

    def on_epoch_begin(self, run: Run, epoch: int) -> None: ...

    def on_step_end(self, run: Run, step: int) -> None: ...

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, float]) -> None: ...

    def on_train_end(self, run: Run) -> None: ...


def _format_logs(logs: dict[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class ProgressLogger(Callback):
    """Per-epoch progress: a tqdm bar on a terminal, one plain line per epoch otherwise."""

    def __init__(self, stream=None, bar: bool | None = None, print_fn: Callable[[str], None] | None = None):
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.print_fn = print_fn or print
        self._pbar = None

    def on_epoch_begin(self, run, epoch):
        self._start = time.perf_counter()
        if self.bar:
            from tqdm.auto import tqdm

            self._pbar = tqdm(total=run.steps_per_epoch, desc=f"Epoch {epoch + 1}/{run.epochs}",
                              unit="step", file=self.stream, leave=False)

    def on_step_end(self, run, step):
        if self._pbar is not None:
            self._pbar.update(1)

    def on_epoch_end(self, run, epoch, logs):
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        seconds = time.perf_counter() - self._start
        self.print_fn(f"Epoch {epoch + 1}/{run.epochs} - {seconds:.1f}s - {_format_logs(logs)}")
