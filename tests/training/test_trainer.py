"""Trainer: learning, determinism, exact evaluation, one compile, donation, bad input, validation split sizes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fit_helpers import blobs

import jaxnn
from jaxnn import Dense, Dropout, Flatten, Sequential, Trainer, optimizers
from jaxnn.layers import ShapeError
from jaxnn.training.trainer import split_sizes

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([0, 1, 1, 0], np.float32)


def test_xor_needs_a_hidden_layer():
    """The seed notes' lesson: one layer cannot separate XOR; one hidden layer can."""
    adam = optimizers.get("adam", learning_rate=0.05)
    mlp = Trainer(Sequential([Dense(8, "tanh"), Dense(1, "sigmoid")]), loss="binary_crossentropy",
                  optimizer=adam, metrics=("accuracy",))
    state = mlp.init(0, (2,))
    state, history = mlp.fit(state, XOR_X, XOR_Y, epochs=300, batch_size=4, verbose=0)
    assert mlp.evaluate(state, XOR_X, XOR_Y)["accuracy"] == 1.0
    single = Trainer(Sequential([Dense(1, "sigmoid")]), loss="binary_crossentropy", optimizer=adam)
    s_state = single.init(0, (2,))
    s_state, _ = single.fit(s_state, XOR_X, XOR_Y, epochs=300, batch_size=4, verbose=0)
    assert single.evaluate(s_state, XOR_X, XOR_Y)["accuracy"] <= 0.75


def _trainer(**kw):
    kw.setdefault("optimizer", "adam")
    return Trainer(Sequential([Dense(16, "relu"), Dropout(0.2), Dense(3, "softmax")]), **kw)


def test_same_seed_same_history_other_seed_other_history():
    x, y = blobs()
    runs = []
    for seed in (0, 0, 1):
        trainer = _trainer()
        state = trainer.init(seed, (2,))
        runs.append(trainer.fit(state, x, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0)[1].history)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert set(runs[0]) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 3 for v in runs[0].values())


def test_fit_learns_and_history_has_keras_keys():
    x, y = blobs()
    trainer = _trainer()
    state, history = trainer.fit(trainer.init(0, (2,)), x, y, epochs=5, validation_data=blobs(200, 1), verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.85
    assert history.epoch == [0, 1, 2, 3, 4]
    assert int(state.step) == 5 * (600 // 32)


def test_evaluate_counts_every_example_once_whatever_the_batch_size():
    x, y = blobs(203)
    trainer = _trainer()
    state = trainer.init(0, (2,))
    probs = trainer.predict(state, x, batch_size=64)
    assert probs.shape == (203, 3)
    ref_loss = float(np.mean(-np.log(np.clip(probs[np.arange(203), y], 1e-7, 1 - 1e-7))))
    ref_acc = float(np.mean(probs.argmax(1) == y))
    for batch_size in (1, 7, 64, 500):  # batch 1: 203 batches, in two calls of 128 and 75
        got = trainer.evaluate(state, x, y, batch_size=batch_size)
        assert got["accuracy"] == pytest.approx(ref_acc, abs=1e-6)
        assert got["loss"] == pytest.approx(ref_loss, rel=1e-5)
    assert trainer._compiled("eval", state)._cache_size() == 4  # one program per batch size, whatever the count
    np.testing.assert_array_equal(trainer.predict_classes(state, x), probs.argmax(1))


def test_fit_compiles_the_step_once_and_donates_the_state():
    x, y = blobs(100)  # 100 = 3 * 32 + 4: the ragged last batch is dropped, not recompiled
    trainer = _trainer()
    state = trainer.init(0, (2,))
    old_kernel = state.params["dense"]["kernel"]
    state, _ = trainer.fit(state, x, y, epochs=2, batch_size=32, verbose=0)
    assert trainer._compiled("fit", state).step._cache_size() == 1
    assert old_kernel.is_deleted()
    state, metrics = trainer.train_step(state, {"inputs": jnp.asarray(x[:32]), "targets": jnp.asarray(y[:32])})
    assert int(state.step) == 7 and set(metrics) == {"loss", "accuracy"}


def test_step_keys_differ_per_step_and_are_reproducible():
    trainer = _trainer()
    state = trainer.init(0, (2,))
    keys = [jax.random.key_data(state.replace(step=jnp.int32(s)).step_key()) for s in (0, 1, 0)]
    assert not np.array_equal(keys[0], keys[1])
    np.testing.assert_array_equal(keys[0], keys[2])


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size must be a positive integer, got 0"),
    (dict(epochs=-1), "epochs must be a positive integer, got -1"),
    (dict(validation_split=1.5), r"validation_split must be in \[0, 1\)"),
    (dict(batch_size=1000), "batch_size 1000 is larger than the 100 training examples"),
])
def test_fit_rejects_bad_settings(kwargs, match):
    x, y = blobs(100)
    trainer = _trainer()
    with pytest.raises(ValueError, match=match):
        trainer.fit(trainer.init(0, (2,)), x, y, verbose=0, **kwargs)


def test_labels_outside_the_classes_are_rejected_before_training():
    x, y = blobs(100)
    y[5] = 3
    trainer = _trainer()
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\) .* found \[3\]"):
        trainer.fit(trainer.init(0, (2,)), x, y, verbose=0)


def test_inputs_that_do_not_fit_the_model_are_rejected():
    trainer = Trainer(Sequential([Flatten(), Dense(3, "softmax")]))
    state = trainer.init(0, (4, 4))
    with pytest.raises(ShapeError, match=r"inputs of shape \(5, 5\) .* expects inputs \(batch, \.\.\., 16\), got shape \(1, 25\)"):
        trainer.evaluate(state, np.zeros((8, 5, 5), np.float32), np.zeros(8, np.int32))
    with pytest.raises(ValueError, match="share their first"):
        trainer.evaluate(state, np.zeros((8, 4, 4), np.float32), np.zeros(7, np.int32))


@pytest.mark.parametrize("kwargs,match", [
    (dict(loss="cross_entropy"), "unknown loss 'cross_entropy'; known: .*sparse_categorical_crossentropy"),
    (dict(optimizer="adamw2"), "unknown optimizer 'adamw2'; known: adam"),
    (dict(metrics=("acuracy",)), "unknown metric 'acuracy'"),
])
def test_unknown_names_fail_when_the_trainer_is_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _trainer(**kwargs)


@pytest.mark.parametrize("num_examples,validation_split,sizes", [
    (600, 0.2, (480, 120)), (100, 0.0, (100, 0)), (10, 0.25, (8, 2)), (10, 0.05, (10, 0))])  # halves to even
def test_split_sizes_hold_out_the_rounded_share(num_examples, validation_split, sizes):
    assert split_sizes(num_examples, validation_split) == sizes


@pytest.mark.parametrize("loss, keys", [
    ("mse", ["loss"]),                                           # regression: accuracy would mean nothing
    ("binary_crossentropy", ["accuracy", "loss"]),
    (jaxnn.losses.get("binary_crossentropy", label_smoothing=0.1), ["accuracy", "loss"]),
    (lambda y, p: jnp.mean((p - y) ** 2, axis=-1), ["loss"]),   # a loss of one's own: no metrics, as Keras
])
def test_accuracy_is_the_default_metric_under_a_cross_entropy_only(loss, keys):
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    trainer = Trainer(Sequential([Dense(1, "sigmoid")]), loss=loss, optimizer="adam")
    _, history = trainer.fit(trainer.init(0, (3,)), x, y, epochs=1, batch_size=16, verbose=0)
    assert sorted(k for k in history.history if k != "lr") == keys
    assert Trainer(Sequential([Dense(1)]), loss="mse", metrics=("mae",)).metrics == ("mae",)
