"""Classification (the default task): train a config's model on a dataset's train split, evaluate on its test split.

Checks the config, refuses a workdir holding another run's checkpoints, loads
the data, trains (resuming from the newest checkpoint in the workdir, if any)
and evaluates, writing into the workdir:

    checkpoints/step_<n>/   checkpoints for exact resume (last K plus the best)
    checkpoints/final/      the final parameters and model state
    tensorboard/            event files: scalars per log interval and epoch, weight histograms
    history.csv, curves.png rewritten after each epoch

In a multi-process run every process trains and checkpoints; only process 0
prints and writes the history, curves and TensorBoard files (no weight
histograms: a process cannot read the others' shards).
"""
from __future__ import annotations

import os
import time

import jax
import ml_collections

from jaxnn.checkpoint import save_tree
from jaxnn.config import Experiment, build, fingerprint
from jaxnn.models import summary
from jaxnn.tasks.common import TASKS
from jaxnn.training.callbacks import (CSVLogger, EarlyStopping, ModelCheckpoint, PlotHistory, ReduceLROnPlateau,
                                      TensorBoard, TerminateOnNaN)
from jaxnn.training.guard import NonFiniteError
from jaxnn.training.history import History
from jaxnn.training.trainer import Trainer, split_sizes


def build_trainer(experiment: Experiment, total_steps: int) -> Trainer:
    """The Trainer of `experiment`'s parts, its optimizer's schedules spanning `total_steps`."""
    train = experiment.train
    return Trainer(experiment.model, loss=experiment.loss, optimizer=experiment.optimizer(total_steps),
                   metrics=experiment.metrics, policy=train["precision"], accumulate_steps=train["accumulate_steps"],
                   check_finite=train["check_finite"], mesh=experiment.mesh, **experiment.sharding)


def _callbacks(train: dict, workdir: str, checkpointer: ModelCheckpoint) -> list:
    callbacks = [TerminateOnNaN()] if train["terminate_on_nan"] else []
    for key, cls in (("early_stopping", EarlyStopping), ("reduce_lr_on_plateau", ReduceLROnPlateau)):
        options = dict(train[key])
        if options.pop("enabled"):
            callbacks.append(cls(**options))
    if jax.process_index() == 0:
        callbacks += [CSVLogger(os.path.join(workdir, "history.csv")),
                      PlotHistory(os.path.join(workdir, "curves.png"))]
        if train["tensorboard"]:
            histogram_freq = train["histogram_freq"] if jax.process_count() == 1 else 0
            callbacks.append(TensorBoard(os.path.join(workdir, "tensorboard"), histogram_freq=histogram_freq))
    return callbacks + [checkpointer]


@TASKS.register("classify")
def classify_task(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> tuple[dict, History]:
    """Train and evaluate a classifier; returns the results (test metrics, sizes) and the History.

    Raises ValueError for a bad config or a workdir of another run (nothing
    written), `TrainingInterrupted` after a SIGTERM (a checkpoint saved) and
    `NonFiniteError` when the loss or a gradient went NaN/inf.
    """
    from jaxnn import data

    started = time.perf_counter()
    experiment = build(config)  # every config error surfaces here, before any I/O
    print_fn = print_fn if jax.process_index() == 0 else None
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
    steps_per_epoch = split_sizes(x_train.shape[0], train["validation_split"])[0] // train["batch_size"]
    trainer = build_trainer(experiment, steps_per_epoch * train["epochs"])
    state = trainer.init(jax.random.key(experiment.seed), x_train.shape[1:])
    summary(trainer.model, x_train.shape[1:], params=state.params, state=state.model_state, print_fn=print_fn,
            policy=trainer.policy)
    state, history = trainer.fit(
        state, x_train, y_train, epochs=train["epochs"], batch_size=train["batch_size"],
        validation_split=train["validation_split"], shuffle=train["shuffle"],
        callbacks=_callbacks(train, workdir, checkpointer), verbose=int(print_fn is not None),
        log_every_steps=train["log_every_steps"],
        watchdog_s=(experiment.distributed["watchdog_s"] or None) if jax.process_count() > 1 else None,
    )
    if history.nonfinite is not None:
        kept = checkpointer.manager.steps()
        raise NonFiniteError(f"{history.nonfinite}; " + (f"last good checkpoint: step {kept[-1]} in "
                                                         f"{checkpointer.manager.directory}" if kept else
                                                         "no checkpoint was saved before it"))
    test = trainer.evaluate(state, x_test, y_test, batch_size=experiment.eval["batch_size"])
    results = {f"test_{k}": v for k, v in test.items()}
    results.update(epochs=len(history.epoch), wall_seconds=round(time.perf_counter() - started, 2),
                   train_examples=int(x_train.shape[0]), test_examples=int(x_test.shape[0]))
    if ckpt_cfg["save_final"]:
        save_tree(os.path.join(workdir, "checkpoints", "final"),
                  {"params": state.params, "model_state": state.model_state})
    return results, history
