"""`run(config, workdir)`: the whole experiment behind `train.py`.

Validate the config, refuse a workdir holding another run's checkpoints, load
the data, train (resuming from the newest checkpoint in the workdir, if any),
evaluate on the test split, and write into the workdir:

    checkpoints/step_<n>/   checkpoints for exact resume (last K plus the best)
    checkpoints/final/      the final parameters and model state
    tensorboard/            event files: scalars per log interval and epoch, weight histograms
    history.csv, curves.png rewritten after each epoch
    history.json, results.json, config.json at the end
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import ml_collections

from jaxnn.checkpoint import save_tree
from jaxnn.config import build, fingerprint
from jaxnn.models import summary
from jaxnn.training.callbacks import (CSVLogger, EarlyStopping, ModelCheckpoint, PlotHistory, ReduceLROnPlateau,
                                      TensorBoard, TerminateOnNaN)
from jaxnn.io import write_atomic

__all__ = ["NonFiniteError", "run", "write_atomic"]


class NonFiniteError(RuntimeError):
    """Training stopped on a NaN or inf; the message names the step (and parameter), the checkpoints stay."""


def _callbacks(experiment, workdir: str, checkpointer: ModelCheckpoint) -> list:
    train = experiment.train
    callbacks = [TerminateOnNaN()] if train["terminate_on_nan"] else []
    for key, cls in (("early_stopping", EarlyStopping), ("reduce_lr_on_plateau", ReduceLROnPlateau)):
        options = dict(train[key])
        if options.pop("enabled"):
            callbacks.append(cls(**options))
    callbacks += [CSVLogger(os.path.join(workdir, "history.csv")), PlotHistory(os.path.join(workdir, "curves.png"))]
    if train["tensorboard"]:
        callbacks.append(TensorBoard(os.path.join(workdir, "tensorboard"), histogram_freq=train["histogram_freq"]))
    return callbacks + [checkpointer]


def _steps_per_epoch(num_examples: int, train: dict) -> int:
    kept = num_examples - int(round(num_examples * train["validation_split"]))
    return kept // train["batch_size"]


def run(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> dict:
    """Train and evaluate the experiment described by `config`; returns the results dict.

    Raises ValueError for a bad config or a workdir of another run (nothing
    written), `TrainingInterrupted` after a SIGTERM (a checkpoint saved) and
    `NonFiniteError` when the loss or a gradient went NaN/inf.
    """
    task = config.get("task", "classify")
    if task != "classify":  # perceptrons, transfer, GAN: jaxnn/tasks/
        from jaxnn import tasks

        return tasks.TASKS.get(task)(config, workdir, print_fn=print_fn)
    from jaxnn import data

    started = time.perf_counter()
    experiment = build(config)  # every config error surfaces here, before any I/O
    ckpt_cfg = experiment.checkpoint
    checkpointer = ModelCheckpoint(os.path.join(workdir, "checkpoints"), monitor=ckpt_cfg["monitor"] or None,
                                   every_steps=ckpt_cfg["every_steps"], keep=ckpt_cfg["keep"],
                                   fingerprint=fingerprint(config), print_fn=print_fn)
    checkpointer.check_compatible()  # another run's workdir is refused before anything is read or written
    ds = experiment.dataset
    (x_train, y_train), (x_test, y_test) = data.load_splits(  # text: the vocabulary comes from the train split
        ds["name"], (ds.get("train_split", "train"), ds.get("test_split", "test")), data_dir=ds.get("data_dir"),
        **data.dataset_options(ds))

    train = experiment.train
    total_steps = _steps_per_epoch(x_train.shape[0], train) * train["epochs"]
    trainer = build(config, total_steps=total_steps).trainer
    state = trainer.init(jax.random.key(experiment.seed), x_train.shape[1:])
    summary(trainer.model, x_train.shape[1:], params=state.params, state=state.model_state, print_fn=print_fn,
            policy=trainer.policy)
    state, history = trainer.fit(
        state, x_train, y_train, epochs=train["epochs"], batch_size=train["batch_size"],
        validation_split=train["validation_split"], shuffle=train["shuffle"],
        callbacks=_callbacks(dataclasses.replace(experiment, trainer=trainer), workdir, checkpointer),
        verbose=int(print_fn is not None), log_every_steps=train["log_every_steps"],
    )
    if history.stop_reason and history.stop_reason.startswith("non-finite"):
        kept = checkpointer.manager.steps()
        raise NonFiniteError(f"{history.stop_reason}; " + (f"last good checkpoint: step {kept[-1]} in "
                                                           f"{checkpointer.manager.directory}" if kept else
                                                           "no checkpoint was saved before it"))
    test = trainer.evaluate(state, x_test, y_test, batch_size=experiment.eval["batch_size"])
    results = {f"test_{k}": v for k, v in test.items()}
    results.update(epochs=len(history.epoch), wall_seconds=round(time.perf_counter() - started, 2),
                   train_examples=int(x_train.shape[0]), test_examples=int(x_test.shape[0]))

    os.makedirs(workdir, exist_ok=True)
    if ckpt_cfg["save_final"]:
        save_tree(os.path.join(workdir, "checkpoints", "final"),
                  {"params": state.params, "model_state": state.model_state})
    write_atomic(os.path.join(workdir, "history.json"), history.to_json())
    write_atomic(os.path.join(workdir, "config.json"), config.to_json(indent=2))
    write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=2))
    if print_fn is not None:
        print_fn(" - ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in results.items()))
    return results
