"""Callbacks in the fit loop: EarlyStopping (Keras's rule, best weights whatever ends the run),
ReduceLROnPlateau, TerminateOnNaN, CSVLogger, TensorBoard files, progress output, curves."""
import csv
import io
import os
import signal

import numpy as np
import pytest
from fit_helpers import blobs, classifier, fit, params, scripted

from jaxnn import optimizers
from jaxnn.training import TrainingInterrupted
from jaxnn.training.callbacks import (CSVLogger, EarlyStopping, LambdaCallback, PlotHistory, ProgressLogger,
                                      ReduceLROnPlateau, TensorBoard, TerminateOnNaN, histogram)


@pytest.mark.parametrize("values,patience,min_delta,stopped_after", [
    ([1.0, 0.9, 0.95, 0.96, 0.97, 0.5], 2, 0.0, 4),   # two epochs without improvement after epoch 2
    ([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], 1, 0.0, 6),      # always improving: runs to the end
    ([1.0, 0.99, 0.98, 0.5, 0.4, 0.3], 2, 0.05, 3),   # improvements below min_delta don't count
    ([1.0, 1.1, 0.5, 0.4, 0.3, 0.2], 0, 0.0, 2),      # Keras's default patience 0: the first stall stops
])
def test_early_stopping_follows_keras_rule(values, patience, min_delta, stopped_after):
    es = EarlyStopping(monitor="val_loss", patience=patience, min_delta=min_delta)
    _, history = fit(classifier(), [scripted("val_loss", values), es])
    assert len(history.epoch) == stopped_after
    assert (history.stop_reason is not None) == (stopped_after < 6)


@pytest.mark.parametrize("values,patience", [([1.0, 0.7, 0.4, 0.6, 0.8, 0.9], 2),   # ended by patience
                                             ([1.0, 0.7, 0.4, 0.6, 0.5, 0.45], 10)])  # ended by the last epoch
def test_restore_best_weights_whatever_ends_the_run(values, patience):
    snapshots = []
    keep = LambdaCallback(on_epoch_end=lambda run, epoch, logs: snapshots.append(params(run.state)))
    es = EarlyStopping(patience=patience, restore_best_weights=True)
    state, history = fit(classifier(), [scripted("val_loss", values), keep, es])
    assert es.best_epoch == 2
    for got, want in zip(params(state), snapshots[2]):
        np.testing.assert_array_equal(got, want)


def test_reduce_lr_on_plateau_lowers_the_rate_after_patience_and_history_shows_it():
    trainer = classifier(optimizer=optimizers.get("sgd", learning_rate=0.1))
    rlr = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2)
    _, history = fit(trainer, [scripted("val_loss", [1.0] * 6), rlr])
    np.testing.assert_allclose(history.history["lr"], [0.1, 0.1, 0.1, 0.05, 0.05, 0.025], rtol=1e-6)


def test_reduce_lr_on_plateau_refuses_a_scheduled_rate_before_training():
    sched = optimizers.get("sgd", schedule_options={"name": "exponential_decay", "decay_steps": 10})
    with pytest.raises(ValueError, match="follows a schedule"):
        fit(classifier(optimizer=sched), [ReduceLROnPlateau()])


def test_history_lr_follows_the_schedule():
    tx = optimizers.get("sgd", learning_rate=0.1, schedule_options={"name": "step_decay", "decay_steps": 15,
                                                                     "decay_rate": 0.5})
    _, history = fit(classifier(optimizer=tx), epochs=3)  # 15 steps per epoch: lr of each epoch's last step
    np.testing.assert_allclose(history.history["lr"], [0.1, 0.05, 0.025], rtol=1e-6)


@pytest.mark.parametrize("steps_per_dispatch, stop_step", [(1, 5), (4, 8)])  # fused: the first chunk end after it
def test_terminate_on_nan_stops_at_the_next_log(steps_per_dispatch, stop_step):
    x, y = blobs(320)
    x[100, 1] = np.inf
    trainer = classifier()
    _, history = trainer.fit(trainer.init(0, (2,)), x, y, epochs=3, batch_size=32, shuffle=False, verbose=0,
                             callbacks=[TerminateOnNaN()], log_every_steps=5, steps_per_dispatch=steps_per_dispatch)
    assert history.epoch == [] and history.stop_reason == f"non-finite loss (nan) by step {stop_step} (epoch 1)"
    found = history.nonfinite
    assert (found.step, found.epoch, found.exact, np.isnan(found.loss)) == (stop_step, 0, False, True)


def test_a_monitor_the_run_never_produces_fails_before_any_step():
    trainer = classifier()
    x, y = blobs()
    state = trainer.init(0, (2,))
    with pytest.raises(ValueError, match="EarlyStopping monitors 'val_loss', which this run never produces; "
                                         "it produces: loss, accuracy, lr"):
        trainer.fit(state, x, y, callbacks=[EarlyStopping()], verbose=0)
    assert not state.params["dense"]["kernel"].is_deleted()  # no step ran
    with pytest.raises(ValueError, match="on_step_end must be callable"):
        LambdaCallback(on_step_end=3)


def test_csv_logger_writes_the_history(tmp_path):
    _, history = fit(classifier(), [CSVLogger(tmp_path / "log" / "history.csv")], epochs=3)
    rows = list(csv.DictReader(open(tmp_path / "log" / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for key, values in history.history.items():
        assert [float(r[key]) for r in rows] == values


def test_tensorboard_files_are_readable_by_tensorflow(tmp_path):
    import tensorflow as tf

    state, history = fit(classifier(), [TensorBoard(tmp_path / "tb")], epochs=2, log_every_steps=5,
                         steps_per_dispatch=1)  # a log at every 5th step exactly
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


def test_tensorboard_histograms_leave_out_non_finite_weights(tmp_path):
    histo = histogram(np.array([np.nan, 1.0, 2.0, np.inf], np.float32), bins=2)
    assert (histo["min"], histo["max"], histo["num"], sum(histo["bucket_counts"])) == (1.0, 2.0, 2, 2)
    assert histogram(np.full(3, np.nan, np.float32)) is None
    # A run gone NaN ends as such (its loss says so) instead of failing in the histograms of its last epoch.
    _, history = fit(classifier(optimizer=optimizers.get("sgd", learning_rate=1e30)), [TensorBoard(tmp_path)],
                     epochs=2)
    assert np.isnan(history.history["loss"][-1])


def test_tensorboard_refuses_bad_histogram_settings(tmp_path):
    with pytest.raises(ValueError, match="TensorBoard bins must be an integer >= 1, got 0"):
        TensorBoard(tmp_path, bins=0)
    with pytest.raises(ValueError, match="TensorBoard histogram_freq must be an integer >= 0, got -1"):
        TensorBoard(tmp_path, histogram_freq=-1)


def test_tensorboard_histogram_of_constant_values_has_one_full_bucket():
    histo = histogram(np.full(7, 2.5, np.float32), bins=4)
    assert (histo["min"], histo["max"], histo["num"], histo["sum"]) == (2.5, 2.5, 7, 17.5)
    assert sum(histo["bucket_counts"]) == 7 and histo["bucket_limits"][0] <= 2.5 <= histo["bucket_limits"][-1]


def test_the_progress_lines_leave_a_stop_signal_to_the_exception_that_carries_it():
    lines, sent = [], []

    def kill_at_step_3(run, batch):
        if run.step >= 3 and not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))

    with pytest.raises(TrainingInterrupted, match="Stopped by SIGTERM at step 3"):
        fit(classifier(), [ProgressLogger(bar=False, print_fn=lines.append), LambdaCallback(on_step_end=kill_at_step_3)],
            epochs=2, steps_per_dispatch=1)
    assert lines == []  # train.py prints the exception's line: printed here too, it came twice
    stopper = EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    fit(classifier(), [ProgressLogger(bar=False, print_fn=lines.append), stopper], epochs=3)
    assert lines[-1].startswith("Early stopping at epoch 2")  # a stop that ends the fit normally is printed


def test_progress_bar_on_a_terminal_and_one_line_per_epoch_otherwise():
    stream, lines = io.StringIO(), []
    fit(classifier(), [ProgressLogger(stream=stream, bar=True, print_fn=lines.append)], epochs=2, log_every_steps=5)
    bar = stream.getvalue()
    assert "Epoch 2/2" in bar and "step/s" in bar and "loss: " in bar
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2 - ") and "steps/s - loss: " in lines[1]
    lines.clear()
    fit(classifier(), [ProgressLogger(stream=io.StringIO(), print_fn=lines.append)], epochs=2)  # not a tty
    assert len(lines) == 2 and "val_accuracy: " in lines[0]


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
    from jaxnn.tasks.classify import build_trainer

    path = pathlib.Path(__file__).resolve().parents[2] / "configs" / "fashion_mnist_seed.py"
    spec = importlib.util.spec_from_file_location("seed_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    trainer = build_trainer(build(module.get_config()), total_steps=1)  # Dense(100, sigmoid) -> Dense(10, softmax), Keras's RMSprop
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
    path = tmp_path / "curves.png"
    seen = []
    plot = PlotHistory(path, min_interval_s=min_interval_s)  # draws off the training thread; flush waits for it
    watch = LambdaCallback(on_epoch_end=lambda run, epoch, logs: (plot.flush(), seen.append(path.exists())))
    fit(classifier(), [plot, watch], epochs=3)
    assert seen[0] == drawn_after_first_epoch
    assert path.read_bytes()[:4] == b"\x89PNG"  # always drawn by the end


def test_the_documented_paths_name_every_callback():
    import jaxnn
    from jaxnn.training import checkpointing, loop

    assert jaxnn.callbacks.ModelCheckpoint is checkpointing.ModelCheckpoint
    assert (jaxnn.callbacks.Callback, jaxnn.callbacks.Run) == (loop.Callback, loop.Run)
    assert jaxnn.callbacks.EarlyStopping is EarlyStopping
