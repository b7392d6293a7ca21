"""The non-finite guard: with check_finite the run stops at the first bad step with the last good parameters,
and the History names that step and the first bad parameter as a typed `NonFinite`; no checkpoint of it."""
import jax
import numpy as np
import pytest
from fit_helpers import blobs

from jaxnn import Dense, Sequential, Trainer, optimizers
from jaxnn.training.checkpointing import ModelCheckpoint
from jaxnn.training.guard import NonFinite


def _trainer(**kw):
    return Trainer(Sequential([Dense(16, "tanh"), Dense(3, "softmax")]),
                   optimizer=optimizers.get("sgd", learning_rate=0.1), **kw)


def _poisoned(bad_step, n=160):
    x, y = blobs(n)
    x[bad_step * 32 + 5, 0] = np.nan  # one poisoned example in that step's batch (no shuffling)
    return x, y


def test_the_run_stops_at_the_first_bad_step_naming_it_and_the_gradient():
    bad_step = 3
    x, y = _poisoned(bad_step)
    trainer = _trainer(check_finite=True)
    state, history = trainer.fit(trainer.init(0, (2,)), x, y, epochs=2, batch_size=32, shuffle=False, verbose=0,
                                 log_every_steps=2)
    assert history.nonfinite == NonFinite(step=bad_step, epoch=0, what="gradient and loss", path="dense/bias")
    assert history.stop_reason == str(history.nonfinite) == (
        f"non-finite gradient (first: dense/bias) and loss at step {bad_step} (epoch 1); "
        "stopped with the last good parameters")
    assert history.epoch == []  # the epoch never finished
    # The state is the last good one: that of a run that stopped right before the bad step.
    clean = _trainer()
    ref, _ = clean.fit(clean.init(0, (2,)), x[: bad_step * 32], y[: bad_step * 32], epochs=1, batch_size=32,
                       shuffle=False, verbose=0)
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(ref.params)):
        np.testing.assert_array_equal(a, b)


def test_a_finite_run_has_no_nonfinite_and_it_is_not_in_the_json():
    x, y = blobs(160)
    trainer = _trainer(check_finite=True)
    _, history = trainer.fit(trainer.init(0, (2,)), x, y, epochs=1, batch_size=32, verbose=0)
    assert history.nonfinite is None and history.stop_reason is None
    assert "nonfinite" not in history.to_json()


def test_a_non_finite_run_is_not_checkpointed(tmp_path):
    x, y = _poisoned(3)
    trainer = _trainer(check_finite=True)
    mc = ModelCheckpoint(tmp_path, every_steps=2, monitor=None, print_fn=None)
    with pytest.warns(RuntimeWarning, match="checkpoint at step 4 skipped: non-finite gradient .* at step 3 "):
        trainer.fit(trainer.init(0, (2,)), x, y, epochs=1, batch_size=32, shuffle=False, verbose=0,
                    callbacks=[mc], log_every_steps=10)
    assert mc.manager.steps() == [2]


@pytest.mark.parametrize("found,message", [
    (NonFinite(7, 1), "non-finite loss at step 7 (epoch 2); stopped with the last good parameters"),
    (NonFinite(7, 0, "gradient", "dense/kernel"),
     "non-finite gradient (first: dense/kernel) at step 7 (epoch 1); stopped with the last good parameters"),
    (NonFinite(9, 2, loss=float("inf"), exact=False), "non-finite loss (inf) by step 9 (epoch 3)"),
    (NonFinite(9, None, loss=float("nan"), exact=False), "non-finite loss (nan) by step 9"),
])
def test_the_message_of_each_kind(found, message):
    assert str(found) == message
