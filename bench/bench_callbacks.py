"""Overhead of the loop's features on bench_fit.py's MLP: `fit` with callbacks, logging and checkpoints
(then also the in-step finite check, gradient clipping and a schedule) against a bare `fit`, in the same run.

    python bench/bench_callbacks.py [--rounds 10] [--epochs 3] [--variants bare,loop,...] [--examples 60000]
                                    [--every-steps 1000] [--hidden 512]

"bare" is `fit(verbose=0)`. "loop" adds everything that watches or saves the
run: a progress bar (to /dev/null), TerminateOnNaN, EarlyStopping
(restore_best_weights), ReduceLROnPlateau, CSVLogger, curves.png (PlotHistory:
at most every 10 s and at the end), TensorBoard (scalars every 50 steps, weight
histograms per epoch), ModelCheckpoint every `--every-steps` steps and at each
epoch end, written by orbax in the background (jaxnn.checkpoint). "+finite" also sets
`check_finite=True` (a pass over the gradients in every step), "+opt" also
clips gradients by global norm and follows a warm-up + cosine schedule (so no
ReduceLROnPlateau): arithmetic added to the step rather than loop overhead,
reported apart.

Each round fits every variant once, `--epochs` epochs each, in the order
given, and each variant's fits continue one training run (global steps, so
checkpoints every N steps, carry on). On shared machines the bare step's
time drifts over tens of seconds (bench/RESULTS.md), so short fits that
alternate, each compared with the bare fit of its own round, cancel the drift
far better than long ones. Two figures per variant and round:

- per step: the median steady-state cycle of the fit (from one epoch's end
  to the next, so it holds an epoch's steps, the background writes they
  overlap and all epoch-end work; the first epoch is left out), divided by
  the steps of an epoch;
- whole fit: the fit's wall time, adding the once-per-run costs (opening the
  event file, the final plot, waiting for the last checkpoint).

The overhead is the ratio to "bare" in the same round; the headline is its
median over rounds, then the quartiles of those ratios.
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


def loop_callbacks(workdir: str, every_steps: int, scheduled: bool) -> list:
    devnull = open(os.devnull, "w")
    plateau = [] if scheduled else [ReduceLROnPlateau(monitor="loss", patience=5)]  # a schedule owns the rate
    return [ProgressLogger(stream=devnull, bar=True, print_fn=lambda line: None), TerminateOnNaN(),
            EarlyStopping(monitor="loss", patience=5, restore_best_weights=True), *plateau,
            CSVLogger(os.path.join(workdir, "history.csv")), PlotHistory(os.path.join(workdir, "curves.png")),
            TensorBoard(os.path.join(workdir, "tensorboard")),
            ModelCheckpoint(os.path.join(workdir, "checkpoints"), monitor="loss", every_steps=every_steps,
                            restore=False, print_fn=None)]


VARIANTS = ("bare", "loop", "loop+finite", "loop+finite+opt")


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
        callbacks = [] if variant == "bare" else loop_callbacks(workdir, every_steps, variant.endswith("+opt"))
        box["state"], _ = trainer.fit(box["state"], x, y, epochs=epochs, batch_size=BATCH, verbose=0,
                                      callbacks=[probe, *callbacks], log_every_steps=LOG_EVERY_STEPS)
        jax.block_until_ready(box["state"].params)
        return [b - a for a, b in zip(ends, ends[1:])]

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, 'bare' first; from {', '.join(VARIANTS)}")
    parser.add_argument("--examples", type=int, default=60000)
    parser.add_argument("--every-steps", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=HIDDEN,
                        help="units per hidden layer; a small one (64) makes the steps dispatch-bound, as on a GPU")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if variants[0] != "bare" or len(variants) < 2 or not set(variants) <= set(VARIANTS):
        parser.error(f"--variants must start with 'bare' and name at least one more of {', '.join(VARIANTS)}, "
                     f"got {args.variants!r}")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the per-step figure needs a steady-state epoch)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    x, y = make_data(args.examples)
    steps_per_epoch = args.examples // BATCH
    steps = steps_per_epoch * args.epochs
    runners = {v: runner(x, y, args.epochs, v, args.every_steps, steps * (args.rounds + 1), args.hidden)
               for v in variants}
    for run in runners.values():
        run()  # compile and warm up
    times = {name: [] for name in runners}
    per_step = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            per_step[name].append(statistics.median(run()) / steps_per_epoch)
            times[name].append(time.perf_counter() - start)
    print(f"device: {jax.devices()[0].platform} x{jax.device_count()}  model: MLP 784-{args.hidden}-{args.hidden}-{CLASSES}  "
          f"batch: {BATCH}  epochs/fit: {args.epochs} ({steps} steps)  checkpoint every {args.every_steps} steps "
          f"+ epoch end  rounds: {args.rounds}")
    for name in runners:
        print(f"{name:15s} per step {1e3 * statistics.median(per_step[name]):.2f} ms "
              f"({_quartiles(per_step[name], 1e3, '.2f')})   whole fit {statistics.median(times[name]):.2f} s")
    for name in variants[1:]:
        step_ratios = [100 * (a / b - 1) for a, b in zip(per_step[name], per_step["bare"])]
        fit_ratios = [100 * (a / b - 1) for a, b in zip(times[name], times["bare"])]
        print(f"overhead {name:15s} / bare: per step {statistics.median(step_ratios):+5.1f}% "
              f"(quartiles {_quartiles(step_ratios, 1, '+.1f')})   whole fit {statistics.median(fit_ratios):+5.1f}% "
              f"(quartiles {_quartiles(fit_ratios, 1, '+.1f')})")


def _quartiles(values, scale: float, fmt: str) -> str:
    if len(values) < 2:
        return format(scale * values[0], fmt)
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{scale * q1:{fmt}} .. {scale * q3:{fmt}}"


if __name__ == "__main__":
    main()
