"""Classification (the default task): train a config's model on a dataset's train split, evaluate on its test split.

Checks the config, refuses a workdir holding another run's checkpoints, loads
the data, trains (resuming from the newest checkpoint in the workdir, if any)
and evaluates, writing into the workdir:

    checkpoints/step_<n>/   checkpoints for exact resume (last K plus the best)
    checkpoints/final/      the final parameters and model state
    model/                  the whole model (`jaxnn.load_model`), with its config; a sweep: model/member_<i>/
    confusion_matrix.png    test-set confusion matrix; per-class precision/recall/F1 go to results.json
    errors.png              image datasets: the most confidently misclassified test images
    tensorboard/            event files: scalars per log interval and epoch, weight histograms
    history.csv, curves.png rewritten after each epoch
    largest_gradients.json/.png   with train.per_example.list_largest = k: the k training examples with the
                                  largest gradient norms, or losses (list_by="loss": wrong labels rank higher)

With DP-SGD (`train.per_example.noise_multiplier` > 0) the results get `privacy`: epsilon at delta.
results.json's `train_seconds` is the time inside `fit`.

A `sweep` section (jaxnn/sweep.py) trains its members at once (a TrainState with a member axis): the
callbacks, history.json and history.csv see the mean over members, curves.png draws each member and the
mean; the results' top-level test metrics, per-class report, confusion matrix and errors.png are the
ensemble's (the mean of the members' probabilities), and `members` holds each member's seed,
hyperparameters and test metrics. checkpoints/final keeps the member axis; each member is also a whole
model of its own in model/member_<i>/ (`jaxnn.load_model`), since one model/ holds one model.

In a multi-process run every process trains and checkpoints; only process 0
prints and writes the history, curves and TensorBoard files (no weight
histograms: a process cannot read the others' shards).
"""
from __future__ import annotations

import contextlib

import os
import time

import jax
import numpy as np
import ml_collections

from jaxnn.checkpoint import save_tree
from jaxnn.config import Experiment, build, fingerprint
from jaxnn.sweep import member_hyperparams
from jaxnn.data.specs import IMAGE_DATASETS
from jaxnn.data.splits import check_data_dir, split_size, split_sizes
from jaxnn.models import summary
from jaxnn.report import class_probabilities, plot_confusion_matrix, plot_errors, report_from_probabilities
from jaxnn.saving import save_model
from jaxnn.tasks.common import TASKS, FitClock
from jaxnn.tasks.ensemble import ensemble_metrics, ensemble_outputs, member_results
from jaxnn.training.callbacks import (CSVLogger, EarlyStopping, ModelCheckpoint, PlotHistory, ReduceLROnPlateau,
                                      TensorBoard, TerminateOnNaN)
from jaxnn.training.guard import NonFiniteError
from jaxnn.training.history import History
from jaxnn.training.largest_gradients import largest_gradients, write_largest_gradients
from jaxnn.training.members import member
from jaxnn.training.per_example import PerExample
from jaxnn.training.privacy import privacy_report
from jaxnn.training.trainer import Trainer


def build_trainer(experiment: Experiment, total_steps: int) -> Trainer:
    """The Trainer of `experiment`'s parts, its optimizer's schedules spanning `total_steps`."""
    train = experiment.train
    return Trainer(experiment.model, loss=experiment.loss, optimizer=experiment.optimizer(total_steps),
                   metrics=experiment.metrics, policy=train["precision"], accumulate_steps=train["accumulate_steps"],
                   check_finite=train["check_finite"], per_example=PerExample.from_options(train["per_example"]),
                   mesh=experiment.mesh, **experiment.sharding)


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


def check_splits(experiment: Experiment) -> int:
    """The data location and split sizes against the batch size, from TFDS's metadata before any data is read;
    returns the training split's size."""
    ds, train = experiment.dataset, experiment.train
    check_data_dir(ds.get("data_dir"))
    sizes = {field: split_size(ds["name"], ds.get(field, default), ds.get("data_dir"), f"dataset.{field}")
             for field, default in (("train_split", "train"), ("test_split", "test"))}
    for field, size in sizes.items():
        if not size:
            raise ValueError(f"dataset.{field} {ds.get(field)!r} holds no examples")
    num_train, num_val = split_sizes(sizes["train_split"], train["validation_split"])
    if train["validation_split"] and not num_val:
        raise ValueError(f"train.validation_split {train['validation_split']} of {sizes['train_split']} examples "
                         "holds out none: raise it or set it to 0")
    if num_train < train["batch_size"]:
        left = " left after train.validation_split" if num_val else ""
        raise ValueError(f"train.batch_size {train['batch_size']} is larger than the {num_train} training "
                         f"examples{left}: give a batch size of at most {num_train}")
    return sizes["train_split"]


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
    num_train = check_splits(experiment)
    ds, train = experiment.dataset, experiment.train
    streamed = data.streams(ds, experiment.data_spec, num_train)
    if streamed and train["per_example"]["list_largest"]:
        raise ValueError("train.per_example.list_largest reads the whole training split: it needs the split in "
                         "memory (dataset.in_memory=True and a split under dataset.max_in_memory_gb)")
    print_fn = print_fn if jax.process_index() == 0 else None
    ckpt_cfg = experiment.checkpoint
    checkpointer = ModelCheckpoint(os.path.join(workdir, "checkpoints"), monitor=ckpt_cfg["monitor"] or None,
                                   every_steps=ckpt_cfg["every_steps"], keep=ckpt_cfg["keep"],
                                   fingerprint=fingerprint(config), print_fn=print_fn)
    checkpointer.check_compatible()  # another run's workdir is refused before anything is read or written
    splits = (ds.get("train_split", "train"), ds.get("test_split", "test"))
    try:
        if streamed:  # the training split streams from the memory-mapped array cache; the test split is reported
            x_train, y_train = data.image_source(ds["name"], splits[0], data_dir=ds.get("data_dir")), None
            x_test, y_test = data.load_arrays(ds["name"], splits[1], data_dir=ds.get("data_dir"))
        else:  # text: the vocabulary comes from the train split
            (x_train, y_train), (x_test, y_test) = data.load_splits(
                ds["name"], splits, data_dir=ds.get("data_dir"), **data.dataset_options(ds))
    except BaseException:
        checkpointer.close()  # nothing but the lock was written: it goes, and the workdir is as it was
        raise

    try:
        num_train = len(x_train) if streamed else len(y_train)  # the split as read (mock data can be smaller)
        input_shape = x_test.shape[1:]
        steps_per_epoch = split_sizes(num_train, train["validation_split"])[0] // train["batch_size"]
        trainer = build_trainer(experiment, steps_per_epoch * train["epochs"])
        members = experiment.members
        if members:
            state = trainer.init([m["seed"] for m in members], input_shape, hyperparams=member_hyperparams(members))
            summary(trainer.model, input_shape, print_fn=print_fn, policy=trainer.policy)
            if print_fn is not None:
                print_fn(f"sweep: {len(members)} members trained at once: "
                         + ", ".join(f"seed {m['seed']}" + "".join(f" {k}={v:g}" for k, v in m["hyperparams"].items())
                                     for m in members))
        else:
            state = trainer.init(jax.random.key(experiment.seed), input_shape)
            summary(trainer.model, input_shape, params=state.params, state=state.model_state,
                    print_fn=print_fn, policy=trainer.policy)
        with FitClock() as clock:
            state, history = trainer.fit(
                state, x_train, y_train, epochs=train["epochs"], batch_size=train["batch_size"],
                validation_split=train["validation_split"], shuffle=train["shuffle"],
                callbacks=_callbacks(train, workdir, checkpointer), verbose=int(print_fn is not None),
                log_every_steps=train["log_every_steps"], steps_per_dispatch=train["steps_per_dispatch"],
                watchdog_s=(experiment.distributed["watchdog_s"] or None) if jax.process_count() > 1 else None,
            )
        if history.nonfinite is not None:
            kept = checkpointer.manager.steps()
            raise NonFiniteError(f"{history.nonfinite}; " + (f"last good checkpoint: step {kept[-1]} in "
                                                             f"{checkpointer.manager.directory}" if kept else
                                                             "no checkpoint was saved before it"))
        from_logits = bool(config.loss.get("from_logits", False))
        eval_batch = experiment.eval["batch_size"]
        outputs = trainer.predict(state, x_test, batch_size=eval_batch)
        if members:
            outputs = ensemble_outputs(outputs, from_logits=from_logits)
            test = ensemble_metrics(trainer, outputs, y_test)
        else:
            test = trainer.evaluate(state, x_test, y_test, batch_size=eval_batch)
        results = {f"test_{k}": v for k, v in test.items()}
        results.update(epochs=len(history.epoch), wall_seconds=round(time.perf_counter() - started, 4),
                       train_seconds=round(clock.seconds, 4), train_examples=num_train,
                       test_examples=int(x_test.shape[0]))
        results.update(_report(experiment, outputs, from_logits, x_test, y_test, workdir))
        results.update(_per_example_results(trainer, state, experiment, x_train, y_train, workdir, print_fn))
        if members:
            results["members"] = member_results(members, trainer.evaluate(state, x_test, y_test, batch_size=eval_batch))
        if ckpt_cfg["save_final"]:
            _save_final(config, experiment, trainer, state, workdir, input_shape)
    except BaseException:
        with contextlib.suppress(Exception):  # the error that stopped the run is the one to report
            checkpointer.close()
        raise
    # The lock stays until the runner has written the results (then the next run takes it without a warning).
    checkpointer.close(release=False)
    return results, history


def _save_final(config, experiment: Experiment, trainer: Trainer, state, workdir: str, input_shape) -> None:
    """checkpoints/final (a sweep's with its member axis) and the whole model in model/ (one per member)."""
    variables = {"params": state.params, "model_state": state.model_state}
    save_tree(os.path.join(workdir, "checkpoints", "final"), variables)  # every process takes part
    if jax.process_count() > 1:  # its staging directory is per process; load_run(workdir) serves many
        return
    save = lambda path, variables: save_model(path, trainer.model, variables, input_shape=input_shape,
                                              dtype=experiment.data_spec.input_dtype, config=config)
    if not experiment.members:
        save(os.path.join(workdir, "model"), variables)
    for m in range(len(experiment.members)):
        save(os.path.join(workdir, "model", f"member_{m}"), member(variables, m))


def _report(experiment: Experiment, outputs, from_logits: bool, x_test, y_test, workdir: str) -> dict:
    """confusion_matrix.png and, for images, errors.png into `workdir` from the model's test `outputs`; returns
    the results' per-class entries."""
    if not isinstance(outputs, np.ndarray):
        raise ValueError("the classify task's report takes a model with one output")
    report = report_from_probabilities(y_test, class_probabilities(outputs, from_logits=from_logits),
                                       experiment.data_spec.class_names)
    if jax.process_index() == 0:  # every process computes the report (predict is collective); one writes it
        plot_confusion_matrix(report, os.path.join(workdir, "confusion_matrix.png"))
        if experiment.dataset["name"] in IMAGE_DATASETS:
            plot_errors(x_test, report, os.path.join(workdir, "errors.png"))
    return {key: report[key] for key in ("per_class", "macro_avg", "confusion_matrix")}


def _per_example_results(trainer, state, experiment: Experiment, x_train, y_train, workdir: str, print_fn) -> dict:
    """With `train.per_example`: the privacy spent (DP-SGD) and the largest-gradient listing of the training part."""
    train = experiment.train
    options, out = train["per_example"], {}
    num_train = split_sizes(len(x_train), train["validation_split"])[0]
    if options["noise_multiplier"]:
        out["privacy"] = privacy_report(options["noise_multiplier"], train["batch_size"], num_train,
                                        int(np.max(state.step)), options["delta"] or None,
                                        members=len(experiment.members) or None)
        if print_fn is not None:
            members = (f" for the {out['privacy']['members']} members together (one alone: "
                       f"{out['privacy']['epsilon_per_member']})" if "epsilon_per_member" in out["privacy"] else "")
            print_fn(f"privacy: epsilon {out['privacy']['epsilon']} at delta {out['privacy']['delta']:.3g}{members}"
                     + (f" ({out['privacy']['note']})" if "note" in out["privacy"] else ""))
    if options["list_largest"]:
        rows = largest_gradients(trainer, state, x_train[:num_train], y_train[:num_train], k=options["list_largest"],
                                 by=options["list_by"])
        images = x_train if experiment.dataset["name"] in IMAGE_DATASETS else None
        write_largest_gradients(workdir, rows, images, experiment.data_spec.class_names)
    return out
