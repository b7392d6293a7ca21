"""Overhead of the loop's features on bench_fit.py's MLP: `fit` with callbacks, logging and checkpoints
(then also the in-step finite check, gradient clipping and a schedule) against a bare `fit`, in the same run.

    python bench/bench_callbacks.py [--repeats 3] [--epochs 3] [--examples 60000] [--every-steps 500]

"bare" is `fit(verbose=0)`. "loop" adds everything that watches or saves the
run: a progress bar (to /dev/null), TerminateOnNaN, EarlyStopping
(restore_best_weights), ReduceLROnPlateau, CSVLogger, curves.png (PlotHistory:
at most every 10 s and at the end), TensorBoard (scalars every 50 steps, weight
histograms per epoch), ModelCheckpoint every `--every-steps` steps and at each
epoch end. "+finite" also sets `check_finite=True` (a pass over the gradients in
every step), "+opt" also clips gradients by global norm and follows a warm-up +
cosine schedule (so no ReduceLROnPlateau): arithmetic added to the step rather
than loop overhead, reported apart. Runs alternate so machine noise hits all
alike; each timing is a whole `fit` of `--epochs` epochs after a warm-up (so the
once-per-fit costs, such as opening the event file and waiting for the last
writes, are spread as in a real run); the overhead is the ratio of median times.
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
from jaxnn.training.callbacks import (CSVLogger, EarlyStopping, ModelCheckpoint, PlotHistory, ProgressLogger,
                                      ReduceLROnPlateau, TensorBoard, TerminateOnNaN)

LOG_EVERY_STEPS = 50


def make_trainer(check_finite: bool, optimizer) -> Trainer:
    model = Sequential([Flatten(), Dense(HIDDEN, "relu"), Dense(HIDDEN, "relu"), Dense(CLASSES)])
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


def runner(x, y, epochs: int, variant: str, every_steps: int, total_steps: int):
    if variant.endswith("+opt"):
        optimizer = optimizers.get("adam", learning_rate=1e-3, global_clipnorm=1.0, total_steps=total_steps,
                                   schedule_options={"name": "warmup_cosine", "warmup_steps": 100})
    else:
        optimizer = optimizers.get("adam", learning_rate=1e-3)
    trainer = make_trainer("+finite" in variant, optimizer)
    box = {"state": trainer.init(0, x.shape[1:])}
    workdir = tempfile.mkdtemp(prefix=f"bench-{variant}-")

    def run():
        callbacks = [] if variant == "bare" else loop_callbacks(workdir, every_steps, variant.endswith("+opt"))
        box["state"], _ = trainer.fit(box["state"], x, y, epochs=epochs, batch_size=BATCH, verbose=0,
                                      callbacks=callbacks, log_every_steps=LOG_EVERY_STEPS)
        jax.block_until_ready(box["state"].params)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=60000)
    parser.add_argument("--every-steps", type=int, default=500)
    args = parser.parse_args()
    x, y = make_data(args.examples)
    steps = (args.examples // BATCH) * args.epochs
    runners = {v: runner(x, y, args.epochs, v, args.every_steps, steps * (args.repeats + 1))
               for v in VARIANTS}
    for run in runners.values():
        run()  # compile and warm up
    times = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"device: {jax.devices()[0].platform} x{jax.device_count()}  model: MLP 784-{HIDDEN}-{HIDDEN}-{CLASSES}  "
          f"batch: {BATCH}  steps/run: {steps}  checkpoint every {args.every_steps} steps + epoch end  "
          f"repeats: {args.repeats}")
    for name, median in medians.items():
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:15s} median {median:7.3f} s  {1e3 * median / steps:6.2f} ms/step   (runs: {runs})")
    for name in VARIANTS[1:]:
        print(f"overhead {name} / bare: {100 * (medians[name] / medians['bare'] - 1):+.1f}%")


if __name__ == "__main__":
    main()
