"""ModelCheckpoint: exact resume after a SIGTERM at several points, refusing another model's or run's
checkpoints, save_best_only, reuse across fits, and the saved state bit for bit."""
import os
import signal

import jax
import numpy as np
import pytest
from fit_helpers import blobs, classifier, fit, params, scripted

from jaxnn import checkpoint as ckpt, optimizers
from jaxnn.checkpoint import CheckpointMismatchError
from jaxnn.training.callbacks import EarlyStopping, LambdaCallback, ReduceLROnPlateau, TensorBoard
from jaxnn.training.checkpointing import ModelCheckpoint
from jaxnn.training.loop import TrainingInterrupted


def test_the_checkpoint_holds_the_final_state_bit_for_bit(tmp_path):
    state, _ = fit(classifier(), [TensorBoard(tmp_path / "tb"), ModelCheckpoint(tmp_path / "ckpt", print_fn=None)],
                   epochs=3)
    manager = ckpt.CheckpointManager(tmp_path / "ckpt")
    assert manager.steps()[-1] == int(state.step)
    saved, meta = manager.restore(lambda e: ckpt.target(jax.ShapeDtypeStruct(e["shape"], e["dtype"])))
    assert meta["epoch"] == 3 and meta["position"] == 0
    for path, a in ckpt.flatten(state).items():
        assert np.asarray(saved[f"state/{path}"]).tobytes() == a.tobytes(), path


def _resumable(directory, extra=()):
    return [EarlyStopping(patience=10, restore_best_weights=True), ReduceLROnPlateau(patience=1, factor=0.5),
            ModelCheckpoint(directory, every_steps=5, keep=2, print_fn=None), *extra]


def _sigterm_at(step):
    sent = []

    def maybe_kill(run, batch):  # once the run has passed `step` (a fused chunk may end after it)
        if run.step >= step and not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))

    return LambdaCallback(on_step_end=maybe_kill)


# Mid-epoch 1, the end of epoch 1, mid-epoch 3; one step per dispatch, and fused chunks of 3 (cut at the
# checkpoint's every 5 steps: 3, 5, 8, 10, 13, 15 | 18, 20, ...), where SIGTERM stops at the chunk's end.
@pytest.mark.parametrize("stop_step, steps_per_dispatch, stopped_at", [
    (7, 1, 7), (15, 1, 15), (37, 1, 37), (7, 3, 8), (15, 3, 15), (37, 3, 38)])
def test_sigterm_saves_and_a_resumed_fit_is_bit_identical(tmp_path, stop_step, steps_per_dispatch, stopped_at):
    whole_state, whole_history = fit(classifier(), _resumable(tmp_path / "whole"), epochs=3)
    with pytest.raises(TrainingInterrupted, match=f"Stopped by SIGTERM at step {stopped_at} .*checkpoint saved to"):
        fit(classifier(), _resumable(tmp_path / "cut", [_sigterm_at(stop_step)]), epochs=3,
            steps_per_dispatch=steps_per_dispatch)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after fit
    state, history = fit(classifier(), _resumable(tmp_path / "cut"), epochs=3)
    assert history.history == whole_history.history
    assert int(state.step) == int(whole_state.step)
    for got, want in zip(params(state), params(whole_state)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("trainer,match", [
    (classifier(hidden=8), r"first mismatch at state/params/dense/bias: checkpoint has shape \(16,\) float32, "
                         r"the model \(8,\) float32"),
    (classifier(optimizer=optimizers.get("sgd")),  # adam's state offered to sgd: refused before optax sees it
     r"state/opt_state/inner_state/0/count \(\) is in the checkpoint but not in the model"),
])
def test_checkpoints_of_another_model_are_refused_and_left_untouched(tmp_path, trainer, match):
    fit(classifier(), [ModelCheckpoint(tmp_path, print_fn=None)], epochs=1)
    before = sorted((p, os.path.getmtime(os.path.join(d, p))) for d, _, ps in os.walk(tmp_path) for p in ps)
    with pytest.raises(CheckpointMismatchError, match=match):
        fit(trainer, [ModelCheckpoint(tmp_path, print_fn=None)], epochs=2)
    assert sorted((p, os.path.getmtime(os.path.join(d, p))) for d, _, ps in os.walk(tmp_path) for p in ps) == before


def test_a_different_fingerprint_names_the_first_differing_field(tmp_path):
    fit(classifier(), [ModelCheckpoint(tmp_path, fingerprint={"optimizer": {"learning_rate": 0.01}},
                                      print_fn=None)], epochs=1)
    other = ModelCheckpoint(tmp_path, fingerprint={"optimizer": {"learning_rate": 0.1}})
    with pytest.raises(CheckpointMismatchError, match="optimizer.learning_rate is 0.01 there and 0.1 here"):
        other.check_compatible()


def test_save_best_only_keeps_checkpoints_of_improving_epochs(tmp_path):
    mc = ModelCheckpoint(tmp_path, save_best_only=True, keep=10, print_fn=None)
    fit(classifier(), [scripted("val_loss", [1.0, 0.5, 0.7, 0.4, 0.9, 0.8]), mc])
    assert mc.manager.steps() == [15, 30, 60]
    assert mc.manager.best_step() == 60


def test_callbacks_can_be_reused_across_fits(tmp_path):
    trainer = classifier()
    x, y = blobs()
    callbacks = [EarlyStopping(patience=5, restore_best_weights=True),
                 ModelCheckpoint(tmp_path, restore=False, print_fn=None)]
    state = trainer.init(0, (2,))
    for _ in range(2):  # the best weights of the first fit were handed back: the second must not reuse them
        state, history = trainer.fit(state, x, y, epochs=2, validation_split=0.2, callbacks=callbacks, verbose=0)
    assert len(history.epoch) == 2 and int(state.step) == 60


@pytest.mark.parametrize("check_finite", [False, True])
def test_a_run_gone_non_finite_leaves_only_finite_checkpoints(tmp_path, check_finite):
    """A huge learning rate makes the parameters inf while the loss of that step was still finite: the
    state to save is checked itself, so no checkpoint on disk holds NaN/inf and the newest is the last good."""
    trainer = classifier(optimizer=optimizers.get("sgd", learning_rate=1e30), check_finite=check_finite)
    with pytest.warns(RuntimeWarning, match="checkpoint at step .* skipped"):
        fit(trainer, [ModelCheckpoint(tmp_path, every_steps=1, print_fn=None)], epochs=2)
    manager = ckpt.CheckpointManager(tmp_path)
    assert manager.steps(), "the first steps were finite and saved"
    for step in manager.steps():
        saved = ckpt.load_tree(manager.path(step))
        assert all(np.isfinite(a).all() for a in saved.values() if np.issubdtype(a.dtype, np.floating)), step
