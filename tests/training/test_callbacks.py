"""Callbacks in the fit loop: EarlyStopping (Keras's rule, best weights whatever ends the run),
ReduceLROnPlateau, TerminateOnNaN, CSVLogger, TensorBoard files, progress output, monitors checked up front,
and ModelCheckpoint's exact resume after a SIGTERM at several points, refusing another model's checkpoints."""
import csv
import io
import os
import signal

import jax
import numpy as np
import pytest

from jaxnn import Dense, Dropout, Sequential, Trainer, optimizers
from jaxnn import checkpoint as ckpt
from jaxnn.checkpoint import CheckpointMismatchError
from jaxnn.training.callbacks import (CSVLogger, EarlyStopping, LambdaCallback, ModelCheckpoint, ProgressLogger,
                                      ReduceLROnPlateau, TensorBoard, TerminateOnNaN, histogram)
from jaxnn.training.trainer import TrainingInterrupted


def _blobs(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    centers = np.array([[2, 0], [-2, 0], [0, 2.5]], np.float32)
    return (centers[y] + rng.normal(size=(n, 2))).astype(np.float32), y


def _trainer(hidden=16, optimizer=None):
    return Trainer(Sequential([Dense(hidden, "relu"), Dropout(0.2), Dense(3, "softmax")]),
                   optimizer=optimizer or optimizers.get("adam", learning_rate=0.01))


def _fit(trainer, callbacks=(), epochs=6, **kw):
    x, y = _blobs()
    kw.setdefault("validation_split", 0.2)
    return trainer.fit(trainer.init(0, (2,)), x, y, epochs=epochs, batch_size=32, callbacks=list(callbacks),
                       verbose=0, **kw)


def _scripted(key, values):
    """Overwrite logs[key] with a scripted value per epoch (runs before the callbacks listed after it)."""
    return LambdaCallback(on_epoch_end=lambda run, epoch, logs: logs.__setitem__(key, values[epoch]))


def _params(state):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(state.params)]


@pytest.mark.parametrize("values,patience,min_delta,stopped_after", [
    ([1.0, 0.9, 0.95, 0.96, 0.97, 0.5], 2, 0.0, 4),   # two epochs without improvement after epoch 2
    ([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], 1, 0.0, 6),      # always improving: runs to the end
    ([1.0, 0.99, 0.98, 0.5, 0.4, 0.3], 2, 0.05, 3),   # improvements below min_delta don't count
    ([1.0, 1.1, 0.5, 0.4, 0.3, 0.2], 0, 0.0, 2),      # Keras's default patience 0: the first stall stops
])
def test_early_stopping_follows_keras_rule(values, patience, min_delta, stopped_after):
    es = EarlyStopping(monitor="val_loss", patience=patience, min_delta=min_delta)
    _, history = _fit(_trainer(), [_scripted("val_loss", values), es])
    assert len(history.epoch) == stopped_after
    assert (history.stop_reason is not None) == (stopped_after < 6)


@pytest.mark.parametrize("values,patience", [([1.0, 0.7, 0.4, 0.6, 0.8, 0.9], 2),   # ended by patience
                                             ([1.0, 0.7, 0.4, 0.6, 0.5, 0.45], 10)])  # ended by the last epoch
def test_restore_best_weights_whatever_ends_the_run(values, patience):
    snapshots = []
    keep = LambdaCallback(on_epoch_end=lambda run, epoch, logs: snapshots.append(_params(run.state)))
    es = EarlyStopping(patience=patience, restore_best_weights=True)
    state, history = _fit(_trainer(), [_scripted("val_loss", values), keep, es])
    assert es.best_epoch == 2
    for got, want in zip(_params(state), snapshots[2]):
        np.testing.assert_array_equal(got, want)


def test_reduce_lr_on_plateau_lowers_the_rate_after_patience_and_history_shows_it():
    trainer = _trainer(optimizer=optimizers.get("sgd", learning_rate=0.1))
    rlr = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2)
    _, history = _fit(trainer, [_scripted("val_loss", [1.0] * 6), rlr])
    np.testing.assert_allclose(history.history["lr"], [0.1, 0.1, 0.1, 0.05, 0.05, 0.025], rtol=1e-6)


def test_reduce_lr_on_plateau_refuses_a_scheduled_rate_before_training():
    sched = optimizers.get("sgd", schedule_options={"name": "exponential_decay", "decay_steps": 10})
    with pytest.raises(ValueError, match="follows a schedule"):
        _fit(_trainer(optimizer=sched), [ReduceLROnPlateau()])


def test_history_lr_follows_the_schedule():
    tx = optimizers.get("sgd", learning_rate=0.1, schedule_options={"name": "step_decay", "decay_steps": 15,
                                                                     "decay_rate": 0.5})
    _, history = _fit(_trainer(optimizer=tx), epochs=3)  # 15 steps per epoch: lr of each epoch's last step
    np.testing.assert_allclose(history.history["lr"], [0.1, 0.05, 0.025], rtol=1e-6)


def test_terminate_on_nan_stops_at_the_next_log():
    x, y = _blobs(320)
    x[100, 1] = np.inf
    trainer = _trainer()
    _, history = trainer.fit(trainer.init(0, (2,)), x, y, epochs=3, batch_size=32, shuffle=False, verbose=0,
                             callbacks=[TerminateOnNaN()], log_every_steps=5)
    assert history.epoch == [] and history.stop_reason.startswith("non-finite loss (nan) by step 5")


def test_a_monitor_the_run_never_produces_fails_before_any_step():
    trainer = _trainer()
    x, y = _blobs()
    state = trainer.init(0, (2,))
    with pytest.raises(ValueError, match="EarlyStopping monitors 'val_loss', which this run never produces; "
                                         "it produces: loss, accuracy, lr"):
        trainer.fit(state, x, y, callbacks=[EarlyStopping()], verbose=0)
    assert not state.params["dense"]["kernel"].is_deleted()  # no step ran
    with pytest.raises(ValueError, match="on_step_end must be callable"):
        LambdaCallback(on_step_end=3)


def test_csv_logger_writes_the_history(tmp_path):
    _, history = _fit(_trainer(), [CSVLogger(tmp_path / "log" / "history.csv")], epochs=3)
    rows = list(csv.DictReader(open(tmp_path / "log" / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for key, values in history.history.items():
        assert [float(r[key]) for r in rows] == values


def test_tensorboard_files_are_readable_by_tensorflow(tmp_path):
    import tensorflow as tf

    state, history = _fit(_trainer(), [TensorBoard(tmp_path / "tb")], epochs=2, log_every_steps=5)
    scalars, histograms = {}, {}
    for path in (tmp_path / "tb").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.HasField("histo"):
                    histograms[(value.tag, event.step)] = value.histo
                else:
                    scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    for key, values in history.history.items():
        np.testing.assert_allclose([scalars[f"epoch/{key}"][e] for e in (1, 2)], values, rtol=1e-6)
    assert sorted(scalars["batch/loss"]) == [5, 10, 15, 20, 25, 30]
    assert {("params/dense/kernel", 1), ("params/dense_1/bias", 2)} <= set(histograms)
    kernel = np.asarray(state.params["dense"]["kernel"]).ravel()  # the last epoch's histogram is of the final weights
    histo = histograms[("params/dense/kernel", 2)]
    assert (histo.num, histo.min, histo.max) == (kernel.size, kernel.min(), kernel.max())
    np.testing.assert_allclose([histo.sum, histo.sum_squares], [kernel.sum(), kernel @ kernel], rtol=1e-5)
    counts, edges = np.histogram(kernel, bins=30)
    np.testing.assert_allclose(histo.bucket_limit, edges, atol=1e-6)
    assert list(histo.bucket) == [0, *counts]


def test_tensorboard_and_checkpoints_share_one_host_copy_of_the_state_per_epoch_end(tmp_path, monkeypatch):
    copies, flatten = [], ckpt.flatten

    def counting(tree, prefix=""):
        copies.extend([tree] if hasattr(tree, "opt_state") else [])
        return flatten(tree, prefix)

    monkeypatch.setattr(ckpt, "flatten", counting)
    state, _ = _fit(_trainer(), [TensorBoard(tmp_path / "tb"), ModelCheckpoint(tmp_path / "ckpt", print_fn=None)],
                    epochs=3)
    assert len(copies) == 3 and copies[-1] is state
    saved, _ = ckpt.load_checkpoint(ckpt.CheckpointManager(tmp_path / "ckpt").path(int(state.step)))
    assert all(np.array_equal(saved[f"state/{p}"], a) for p, a in flatten(state).items())


def test_tensorboard_refuses_bad_histogram_settings(tmp_path):
    with pytest.raises(ValueError, match="TensorBoard bins must be an integer >= 1, got 0"):
        TensorBoard(tmp_path, bins=0)
    with pytest.raises(ValueError, match="TensorBoard histogram_freq must be an integer >= 0, got -1"):
        TensorBoard(tmp_path, histogram_freq=-1)


def test_tensorboard_histogram_of_constant_values_has_one_full_bucket():
    histo = histogram(np.full(7, 2.5, np.float32), bins=4)
    assert (histo["min"], histo["max"], histo["num"], histo["sum"]) == (2.5, 2.5, 7, 17.5)
    assert sum(histo["bucket_counts"]) == 7 and histo["bucket_limits"][0] <= 2.5 <= histo["bucket_limits"][-1]


def test_progress_bar_on_a_terminal_and_one_line_per_epoch_otherwise():
    stream, lines = io.StringIO(), []
    _fit(_trainer(), [ProgressLogger(stream=stream, bar=True, print_fn=lines.append)], epochs=2, log_every_steps=5)
    bar = stream.getvalue()
    assert "Epoch 2/2" in bar and "step/s" in bar and "loss: " in bar
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2 - ") and "steps/s - loss: " in lines[1]
    lines.clear()
    _fit(_trainer(), [ProgressLogger(stream=io.StringIO(), print_fn=lines.append)], epochs=2)  # not a tty
    assert len(lines) == 2 and "val_accuracy: " in lines[0]


def _resumable(directory, extra=(), writer="auto"):
    return [EarlyStopping(patience=10, restore_best_weights=True), ReduceLROnPlateau(patience=1, factor=0.5),
            ModelCheckpoint(directory, every_steps=5, keep=2, print_fn=None, writer=writer), *extra]


def _sigterm_at(step):
    def maybe_kill(run, batch):
        if run.step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    return LambdaCallback(on_step_end=maybe_kill)


@pytest.mark.parametrize("stop_step,writer", [  # mid-epoch 1, the end of epoch 1, mid-epoch 3
    (7, "auto"), (15, "auto"), (37, "auto"), (37, "thread")])
def test_sigterm_saves_and_a_resumed_fit_is_bit_identical(tmp_path, stop_step, writer):
    whole_state, whole_history = _fit(_trainer(), _resumable(tmp_path / "whole"), epochs=3)
    with pytest.raises(TrainingInterrupted, match=f"Stopped by SIGTERM at step {stop_step} .*checkpoint saved to"):
        _fit(_trainer(), _resumable(tmp_path / "cut", [_sigterm_at(stop_step)], writer), epochs=3)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after fit
    state, history = _fit(_trainer(), _resumable(tmp_path / "cut", writer=writer), epochs=3)
    assert history.history == whole_history.history
    assert int(state.step) == int(whole_state.step)
    for got, want in zip(_params(state), _params(whole_state)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("trainer,match", [
    (_trainer(hidden=8), r"first mismatch at state/params/dense/bias: checkpoint has shape \(16,\) float32, "
                         r"the model \(8,\) float32"),
    (_trainer(optimizer=optimizers.get("sgd")),  # adam's state offered to sgd: refused before optax sees it
     r"state/opt_state/inner_state/0/count \(\) is in the checkpoint but not in the model"),
])
def test_checkpoints_of_another_model_are_refused_and_left_untouched(tmp_path, trainer, match):
    _fit(_trainer(), [ModelCheckpoint(tmp_path, print_fn=None)], epochs=1)
    before = sorted((p, os.path.getmtime(os.path.join(d, p))) for d, _, ps in os.walk(tmp_path) for p in ps)
    with pytest.raises(CheckpointMismatchError, match=match):
        _fit(trainer, [ModelCheckpoint(tmp_path, print_fn=None)], epochs=2)
    assert sorted((p, os.path.getmtime(os.path.join(d, p))) for d, _, ps in os.walk(tmp_path) for p in ps) == before


def test_model_checkpoint_refuses_an_unknown_writer(tmp_path):
    with pytest.raises(ValueError, match="writer must be 'auto', 'process' or 'thread', got 'disk'"):
        ModelCheckpoint(tmp_path, writer="disk")


def test_a_different_fingerprint_names_the_first_differing_field(tmp_path):
    _fit(_trainer(), [ModelCheckpoint(tmp_path, fingerprint={"optimizer": {"learning_rate": 0.01}},
                                      print_fn=None)], epochs=1)
    other = ModelCheckpoint(tmp_path, fingerprint={"optimizer": {"learning_rate": 0.1}})
    with pytest.raises(CheckpointMismatchError, match="optimizer.learning_rate is 0.01 there and 0.1 here"):
        other.check_compatible()


def test_save_best_only_keeps_checkpoints_of_improving_epochs(tmp_path):
    mc = ModelCheckpoint(tmp_path, save_best_only=True, keep=10, print_fn=None)
    _fit(_trainer(), [_scripted("val_loss", [1.0, 0.5, 0.7, 0.4, 0.9, 0.8]), mc])
    assert mc.manager.steps() == [15, 30, 60]
    assert mc.manager.best_step() == 60


def test_callbacks_can_be_reused_across_fits(tmp_path):
    trainer = _trainer()
    x, y = _blobs()
    callbacks = [EarlyStopping(patience=5, restore_best_weights=True),
                 ModelCheckpoint(tmp_path, restore=False, print_fn=None)]
    state = trainer.init(0, (2,))
    for _ in range(2):  # the best weights of the first fit were handed back: the second must not reuse them
        state, history = trainer.fit(state, x, y, epochs=2, validation_split=0.2, callbacks=callbacks, verbose=0)
    assert len(history.epoch) == 2 and int(state.step) == 60


def test_plot_history_returns_a_figure_and_writes_a_png(tmp_path):
    from matplotlib.figure import Figure

    from jaxnn import plot_history

    hist = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "lr": [0.1, 0.1]}
    fig = plot_history(hist, tmp_path / "curves.png")
    assert isinstance(fig, Figure) and [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in fig.axes[0].lines] == ["loss", "val_loss"]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_early_stopping_on_the_seed_model_returns_the_best_validation_epoch():
    """The seed notes' overfitting lesson: with restore_best_weights the run ends with the weights of the
    epoch of lowest val_loss, checked by evaluating them again on the validation split."""
    import importlib.util
    import pathlib

    from jaxnn import data
    from jaxnn.config import build

    path = pathlib.Path(__file__).resolve().parents[2] / "configs" / "fashion_mnist_seed.py"
    spec = importlib.util.spec_from_file_location("seed_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    trainer = build(module.get_config()).trainer  # Dense(100, sigmoid) -> Dense(10, softmax), Keras's RMSprop
    x, y = data.load_arrays("fashion_mnist", "train[:2000]")
    es = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    state, history = trainer.fit(trainer.init(0, x.shape[1:]), x, y, epochs=60, batch_size=32,
                                 validation_split=0.2, callbacks=[es], verbose=0)
    val_loss = history.history["val_loss"]
    best = int(np.argmin(val_loss))
    assert es.best_epoch == best and len(val_loss) == best + 4  # stopped by patience after overfitting
    again = trainer.evaluate(state, x[1600:], y[1600:], batch_size=32)
    assert again["loss"] == val_loss[best]
    assert again["accuracy"] == history.history["val_accuracy"][best]
    print(f"seed model: best epoch {best + 1} of {len(val_loss)}, val_loss {val_loss[best]:.4f} "
          f"(last {val_loss[-1]:.4f}), re-evaluated {again['loss']:.4f}")


@pytest.mark.parametrize("min_interval_s,drawn_after_first_epoch", [(0.0, True), (1e9, False)])
def test_curves_png_is_redrawn_at_epoch_ends_no_more_often_than_asked(tmp_path, min_interval_s,
                                                                      drawn_after_first_epoch):
    from jaxnn.training.callbacks import PlotHistory

    path = tmp_path / "curves.png"
    seen = []
    plot = PlotHistory(path, min_interval_s=min_interval_s)  # draws off the training thread; flush waits for it
    watch = LambdaCallback(on_epoch_end=lambda run, epoch, logs: (plot.flush(), seen.append(path.exists())))
    _fit(_trainer(), [plot, watch], epochs=3)
    assert seen[0] == drawn_after_first_epoch
    assert path.read_bytes()[:4] == b"\x89PNG"  # always drawn by the end
