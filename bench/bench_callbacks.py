"""Overhead of the loop's features on bench_fit.py's MLP: `fit` with callbacks, logging and checkpoints
(then also the in-step finite check, gradient clipping and a schedule) against a bare `fit`, in the same run.

    python bench/bench_callbacks.py [--repeats 3] [--epochs 6] [--examples 60000] [--every-steps 1000] [--hidden 512]

"bare" is `fit(verbose=0)`. "loop" adds everything that watches or saves the
run: a progress bar (to /dev/null), TerminateOnNaN, EarlyStopping
(restore_best_weights), ReduceLROnPlateau, CSVLogger, curves.png (PlotHistory:
at most every 10 s and at the end), TensorBoard (scalars every 50 steps, weight
histograms per epoch), ModelCheckpoint every `--every-steps` steps and at each
epoch end, written by its child process; "loop-thread" writes them on a thread
of the training process instead (`writer="thread"`). "+finite" also sets
`check_finite=True` (a pass over the gradients in every step), "+opt" also
clips gradients by global norm and follows a warm-up + cosine schedule (so no
ReduceLROnPlateau): arithmetic added to the step rather than loop overhead,
reported apart. Runs alternate so machine noise hits all alike. Two figures
per variant and repeat:

- per step: the steady-state time of one epoch (from one epoch's end to the
  next, so it holds the epoch's steps, the background writes they overlap and
  all epoch-end work; the first epoch is left out), divided by its steps;
- whole fit: a `fit` of `--epochs` epochs after a warm-up, which adds the
  once-per-run costs (opening the event file, the final plot and waiting for
  the last checkpoint to be written), spread over the run as in a real one.

Each overhead is a ratio against "bare" in the same repeat (adjacent fits, so
slow drifts of the machine cancel); the headline is the median over repeats,
followed by each repeat's ratio.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax

import jaxnn
from bench_fit import BATCH, CLASSES, HIDDEN, make_data
from jaxnn import Dense, Flatten, Sequential, Trainer, optimizers
from jaxnn.training.callbacks import (CSVLogger, EarlyStopping, LambdaCallback, ModelCheckpoint, PlotHistory,
                                      ProgressLogger, ReduceLROnPlateau, TensorBoard, TerminateOnNaN)

LOG_EVERY_STEPS = 50


def make_trainer(check_finite: bool, optimizer, hidden: int = HIDDEN) -> Trainer:
    model = Sequential([Flatten(), Dense(hidden, "relu"), Dense(hidden, "relu"), Dense(CLASSES)])
    return Trainer(model, loss=jaxnn.losses.get("sparse_categorical_crossentropy", from_logits=True),
                   optimizer=optimizer, metrics=("accuracy",), check_finite=check_finite)


def loop_callbacks(workdir: str, every_steps: int, scheduled: bool, writer: str = "auto") -> list:
    devnull = open(os.devnull, "w")
    plateau = [] if scheduled else [ReduceLROnPlateau(monitor="loss", patience=5)]  # a schedule owns the rate
    return [ProgressLogger(stream=devnull, bar=True, print_fn=lambda line: None), TerminateOnNaN(),
            EarlyStopping(monitor="loss", patience=5, restore_best_weights=True), *plateau,
            CSVLogger(os.path.join(workdir, "history.csv")), PlotHistory(os.path.join(workdir, "curves.png")),
            TensorBoard(os.path.join(workdir, "tensorboard")),
            ModelCheckpoint(os.path.join(workdir, "checkpoints"), monitor="loss", every_steps=every_steps,
                            restore=False, print_fn=None, writer=writer)]


VARIANTS = ("bare", "loop", "loop-thread", "loop+finite", "loop+finite+opt")


def runner(x, y, epochs: int, variant: str, every_steps: int, total_steps: int, hidden: int):
    if variant.endswith("+opt"):
        optimizer = optimizers.get("adam", learning_rate=1e-3, global_clipnorm=1.0, total_steps=total_steps,
                                   schedule_options={"name": "warmup_cosine", "warmup_steps": 100})
    else:
        optimizer = optimizers.get("adam", learning_rate=1e-3)
    trainer = make_trainer("+finite" in variant, optimizer, hidden)
    box = {"state": trainer.init(0, x.shape[1:])}
    workdir = tempfile.mkdtemp(prefix=f"bench-{variant}-")

    def run() -> list[float]:
        """Fits once; returns the steady-state epoch cycle times (seconds)."""
        ends = []
        probe = LambdaCallback(on_epoch_end=lambda run, epoch, logs: ends.append(time.perf_counter()))
        probe.order = -1000  # first at each epoch end, so a cycle holds one epoch's steps and its end-of-epoch work
        writer = "thread" if variant.endswith("-thread") else "auto"
        callbacks = [] if variant == "bare" else loop_callbacks(workdir, every_steps, variant.endswith("+opt"), writer)
        box["state"], _ = trainer.fit(box["state"], x, y, epochs=epochs, batch_size=BATCH, verbose=0,
                                      callbacks=[probe, *callbacks], log_every_steps=LOG_EVERY_STEPS)
        jax.block_until_ready(box["state"].params)
        return [b - a for a, b in zip(ends, ends[1:])]

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--examples", type=int, default=60000)
    parser.add_argument("--every-steps", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=HIDDEN,
                        help="units per hidden layer; a small one (64) makes the steps dispatch-bound, as on a GPU")
    args = parser.parse_args()
    x, y = make_data(args.examples)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the per-step figure needs a steady-state epoch)")
    steps_per_epoch = args.examples // BATCH
    steps = steps_per_epoch * args.epochs
    runners = {v: runner(x, y, args.epochs, v, args.every_steps, steps * (args.repeats + 1), args.hidden)
               for v in VARIANTS}
    for run in runners.values():
        run()  # compile and warm up
    times = {name: [] for name in runners}
    cycles = {name: [] for name in runners}  # per repeat: the steady-state epoch cycles of its fit
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            cycles[name].append(run())
            times[name].append(time.perf_counter() - start)
    per_step = {name: [statistics.median(c) / steps_per_epoch for c in runs] for name, runs in cycles.items()}
    print(f"device: {jax.devices()[0].platform} x{jax.device_count()}  model: MLP 784-{args.hidden}-{args.hidden}-{CLASSES}  "
          f"batch: {BATCH}  epochs/fit: {args.epochs} ({steps} steps)  checkpoint every {args.every_steps} steps "
          f"+ epoch end  repeats: {args.repeats}")
    for name in runners:
        print(f"{name:15s} per step {_list(per_step[name], 1e3, '.2f')} ms   whole fit {_list(times[name], 1, '.2f')} s")
    for name in VARIANTS[1:]:
        step_ratios = [100 * (a / b - 1) for a, b in zip(per_step[name], per_step["bare"])]
        fit_ratios = [100 * (a / b - 1) for a, b in zip(times[name], times["bare"])]
        print(f"overhead {name:15s} / bare: per step {statistics.median(step_ratios):+5.1f}% "
              f"({_list(step_ratios, 1, '+.1f')})   whole fit {statistics.median(fit_ratios):+5.1f}% "
              f"({_list(fit_ratios, 1, '+.1f')})")


def _list(values, scale: float, fmt: str) -> str:
    return ", ".join(format(scale * v, fmt) for v in values)


if __name__ == "__main__":
    main()
