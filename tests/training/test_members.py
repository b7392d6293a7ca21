"""Ensembles on a member axis: one jitted step trains M models, each as it would train alone (to float32
rounding: vmap batches the matmuls), with its own keys, data order, hyperparameters and early stopping."""
import jax
import numpy as np
import pytest
from fit_helpers import blobs, classifier

from jaxnn import checkpoint as ckpt, optimizers
from jaxnn.training.callbacks import EarlyStopping, ModelCheckpoint
from jaxnn.training.members import member, member_count

SEEDS, RATES = (0, 1, 2), (0.01, 0.03, 0.003)


def _alone(seed, lr, epochs=3, **kw):
    trainer = classifier(optimizer=optimizers.get("adam", learning_rate=lr))
    x, y = blobs()
    return trainer.fit(trainer.init(seed, (2,)), x, y, epochs=epochs, batch_size=32, validation_split=0.2, verbose=0,
                       **kw)


def _ensemble(epochs=3, callbacks=(), **kw):
    trainer = classifier()
    x, y = blobs()
    state = trainer.init(list(SEEDS), (2,), hyperparams={"learning_rate": list(RATES)})
    return trainer, *trainer.fit(state, x, y, epochs=epochs, batch_size=32, validation_split=0.2, verbose=0,
                                 callbacks=list(callbacks), **kw)


def _close(a, b, rtol=1e-5):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=1e-6)


def test_each_member_trains_as_it_would_alone():
    trainer, state, history = _ensemble()
    assert member_count(state) == 3 and len(history.members) == 3
    for m, (seed, lr) in enumerate(zip(SEEDS, RATES)):
        alone_state, alone = _alone(seed, lr)
        assert sorted(history.members[m].history) == sorted(alone.history)
        for key in alone.history:
            np.testing.assert_allclose(history.members[m].history[key], alone.history[key], rtol=1e-5, err_msg=key)
        _close(member(state.params, m), alone_state.params)
    # The run's History is the mean over members.
    np.testing.assert_allclose(history.history["loss"], np.mean([h.history["loss"] for h in history.members], 0))
    np.testing.assert_allclose(history.history["lr"], [np.mean(RATES)] * 3, rtol=1e-6)


def test_members_draw_their_own_initialization_and_order():
    trainer = classifier()
    state = trainer.init([5, 6], (2,))
    a, b = (member(state.params, m)["dense"]["kernel"] for m in (0, 1))
    assert not np.array_equal(a, b)
    alone, as_member = (ckpt.leaves(s) for s in (trainer.init(5, (2,)), member(state, 0)))  # keys as key data
    assert list(as_member) == list(alone)
    for path in alone:  # every leaf, keys and optimizer state too
        np.testing.assert_array_equal(as_member[path], alone[path])


def test_evaluate_and_predict_have_one_entry_per_member():
    trainer, state, _ = _ensemble(epochs=1)
    x, y = blobs(100, seed=1)
    evals = trainer.evaluate(state, x, y, batch_size=32)
    probs = trainer.predict(state, x, batch_size=32)
    assert len(evals) == 3 and probs.shape == (3, 100, 3)
    for m in range(3):
        one = member(state, m)
        alone = classifier()
        np.testing.assert_allclose(probs[m], alone.predict(one, x, batch_size=32), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(evals[m]["accuracy"], np.mean(probs[m].argmax(1) == y), rtol=1e-6)
    np.testing.assert_array_equal(trainer.predict_classes(state, x, batch_size=32), probs.mean(0).argmax(1))


def test_early_stopping_masks_each_member_and_keeps_its_best_weights():
    # A learning rate of 3 makes member 0's validation loss worsen at once; member 2's (3e-3) keeps improving.
    trainer, x, y = classifier(), *blobs()
    es = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    state = trainer.init([0, 1, 2], (2,), hyperparams={"learning_rate": [3.0, 0.01, 0.003]})
    state, history = trainer.fit(state, x, y, epochs=6, batch_size=32, validation_split=0.2, verbose=0,
                                 callbacks=[es])
    lengths = [len(h.epoch) for h in history.members]
    assert lengths[0] < 6 and lengths[2] == 6 and len(history.epoch) == 6
    for m in range(3):  # each member ends with its best epoch's weights: its val_loss there is the best seen
        val = history.members[m].history["val_loss"]
        assert es.best_epoch[m] == int(np.argmin(val))
        got = classifier().evaluate(member(state, m), x[480:], y[480:], batch_size=32)["loss"]
        np.testing.assert_allclose(got, min(val), rtol=1e-5)


def test_a_member_checkpoint_resumes_bit_identically(tmp_path):
    callbacks = lambda d: [EarlyStopping(patience=1), ModelCheckpoint(d, every_steps=7, print_fn=None)]
    _, whole_state, whole = _ensemble(epochs=4, callbacks=callbacks(tmp_path / "whole"))
    _ensemble(epochs=2, callbacks=callbacks(tmp_path / "cut"))
    _, state, history = _ensemble(epochs=4, callbacks=callbacks(tmp_path / "cut"))
    assert history.history == whole.history
    assert [h.history for h in history.members] == [h.history for h in whole.members]
    plain = lambda s: jax.tree_util.tree_leaves(s.replace(key=jax.random.key_data(s.key)))
    for a, b in zip(plain(state), plain(whole_state)):
        np.testing.assert_array_equal(a, b)


def test_member_seeds_are_the_lone_models_seeds_in_any_form():
    trainer = classifier()
    lone = [ckpt.leaves(trainer.init(seed, (2,))) for seed in (-1, 0, 2**40)]
    for seeds in ([-1, 0, 2**40], np.array([-1, 0, 2**40])):
        state = trainer.init(seeds, (2,))
        for m, alone in enumerate(lone):
            got = ckpt.leaves(member(state, m))
            for path in alone:
                np.testing.assert_array_equal(got[path], alone[path])
    assert member_count(trainer.init(range(2), (2,))) == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(key=3, hyperparams={"learning_rate": [0.1]}), "hyperparams are set per member"),
    (dict(key=[0, 1], hyperparams={"learning_rate": [0.1]}),
     r"hyperparams\['learning_rate'\] must give one value per member \(2\)"),
    (dict(key=[0, 1], hyperparams={"momentum": [0.1, 0.2]}),
     r"the optimizer does not expose its momentum; it injects only learning_rate \(to set momentum, build"),
    (dict(key=[], hyperparams=None), "keys must hold at least one key"),
])
def test_bad_member_settings_are_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match):
        classifier().init(kwargs["key"], (2,), hyperparams=kwargs["hyperparams"])


def test_saving_an_ensemble_as_one_model_says_to_take_a_member(tmp_path):
    import jaxnn

    trainer = classifier()
    state = trainer.init([0, 1, 2], (2,))
    with pytest.raises(ValueError, match=r"an ensemble's state has a leading member axis \(3 members\): give one "
                                         r"member, jaxnn.training.members.member\(state, i\)$"):
        jaxnn.save_model(tmp_path / "m", trainer.model, state, input_shape=(2,))
    assert not (tmp_path / "m").exists()
    jaxnn.save_model(tmp_path / "m", trainer.model, member(state, 1), input_shape=(2,))
    _, variables = jaxnn.load_model(tmp_path / "m")
    _close(variables["params"], member(state.params, 1))
