"""Keras habits that work in jaxnn as a Keras user writes them (issue 20, item 6): one test per habit."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fit_helpers import blobs, classifier, fit

import jaxnn
from jaxnn import Dense, Flatten, Sequential, Trainer


class KerasStyle(jaxnn.Callback):
    """Written as for Keras: no `run` argument; the run is `self.run`, as Keras's is `self.model`."""

    def __init__(self, stop_at_epoch):
        self.stop_at_epoch, self.seen = stop_at_epoch, []

    def on_train_begin(self, logs=None):
        self.seen.append(("begin", logs))

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((epoch, sorted(logs)))
        if epoch == self.stop_at_epoch:
            self.run.stop_training = True

    def on_train_end(self, logs=None):
        self.seen.append(("end", sorted(logs)))


def test_keras_style_callback_gets_epoch_and_logs_and_stops_through_self_run():
    cb = KerasStyle(stop_at_epoch=1)
    _, history = fit(classifier(), [cb], epochs=5)
    keys = ["accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert cb.seen == [("begin", {}), (0, keys), (1, keys), ("end", keys)]
    assert len(history.epoch) == 2


def test_keras_style_lambda_callback_and_the_run_first_form_side_by_side():
    keras_form, run_form = [], []
    callbacks = [jaxnn.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: keras_form.append((epoch, logs["loss"]))),
                 jaxnn.callbacks.LambdaCallback(on_epoch_end=lambda run, epoch, logs: run_form.append(
                     (epoch, logs["loss"], int(run.state.step))))]
    _, history = fit(classifier(), callbacks, epochs=2)
    assert keras_form == [(0, history.history["loss"][0]), (1, history.history["loss"][1])]
    assert [r[:2] for r in run_form] == keras_form and run_form[1][2] == 2 * (480 // 32)


def test_a_keras_hook_jaxnn_never_calls_is_refused_in_one_line():
    class PerBatch(jaxnn.Callback):
        def on_train_batch_end(self, batch, logs=None): ...

    with pytest.raises(ValueError, match=r"^PerBatch defines on_train_batch_end, which jaxnn's fit never calls: use "
                                         r"on_step_end[^\n]*$"):
        fit(classifier(), [PerBatch()], epochs=1)


def test_a_callback_not_derived_from_callback_is_refused_in_one_line():
    class Plain:
        def on_epoch_end(self, epoch, logs=None): ...

    with pytest.raises(ValueError, match=r"^callbacks must subclass jaxnn.callbacks.Callback .* got Plain$"):
        fit(classifier(), [Plain()], epochs=1)


def test_callbacks_import_from_jaxnn_callbacks_as_from_keras_callbacks():
    from jaxnn.callbacks import EarlyStopping
    from jaxnn.training import callbacks

    assert EarlyStopping is callbacks.EarlyStopping and jaxnn.callbacks.EarlyStopping is EarlyStopping


def test_sequential_summary_and_layers_like_keras():
    dense = Dense(10, "softmax")
    model = Sequential([Flatten(), Dense(100, "sigmoid"), dense])
    assert model.summary((28, 28), print_fn=None) == jaxnn.summary(model, (28, 28), print_fn=None)
    assert model.layers[-1] is dense
    with_input = Sequential([jaxnn.Input((28, 28)), Flatten(), Dense(100, "sigmoid"), Dense(10, "softmax")])
    assert "Total params: 79,510" in with_input.summary(print_fn=None)
    with pytest.raises(ValueError, match=r"^sequential.summary needs the input shape .*summary\(\(28, 28\)\)"):
        model.summary(print_fn=None)


def test_graph_model_layers_like_keras():
    image = jaxnn.Input((4,), name="image")
    hidden = Dense(3)
    model = jaxnn.Model(image, Dense(2)(hidden(image)))
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Dense", "Dense"]
    assert model.layers[1] is hidden


def _frozen_first_model():
    return Sequential([Dense(8, "relu", trainable=False), Dense(3, "softmax")])


def test_trainable_false_layer_gets_no_updates_and_others_do():
    trainer = Trainer(_frozen_first_model(), optimizer="adam")
    x, y = blobs()
    start = trainer.init(0, (2,))
    before = jax.tree_util.tree_map(np.asarray, start.params)
    state, _ = trainer.fit(start, x, y, epochs=2, verbose=0)
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(np.asarray(state.params["dense"][name]), before["dense"][name])
        assert not np.array_equal(np.asarray(state.params["dense_1"][name]), before["dense_1"][name])


def test_summary_counts_frozen_params_as_non_trainable_also_in_a_nested_model():
    text = _frozen_first_model().summary((2,), print_fn=None)
    assert "Trainable params: 27" in text and "Non-trainable params: 24" in text  # 2*8+8 frozen, 8*3+3 trained
    x = jaxnn.Input((2,))
    frozen_block = Sequential([Dense(8), Dense(8)], trainable=False)
    outer = jaxnn.Model(x, Dense(1)(frozen_block(x)))
    text = outer.summary(print_fn=None)
    assert "Trainable params: 9" in text and "Non-trainable params: 96" in text  # (2*8+8) + (8*8+8) frozen


def _logistic(loss="binary_crossentropy"):
    return Trainer(Sequential([Dense(1, "sigmoid")]), loss=loss, optimizer=optax.sgd(0.5), metrics=())


def _separable(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, (x @ np.array([1.0, -2.0, 0.5]) > 0).astype(np.int32)


def test_sample_weight_gives_the_weighted_mean_loss_step():
    trainer, (x, y) = _logistic(), _separable()
    w = np.linspace(0.0, 2.0, len(x)).astype(np.float32)
    state = trainer.init(0, (3,))
    p0 = jax.tree_util.tree_map(jnp.array, state.params)
    got, _ = trainer.fit(state, x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0, sample_weight=w)

    def weighted_mean_loss(p):
        probs, _ = trainer.model.apply(p, x)
        return jnp.sum(w * jaxnn.losses.binary_crossentropy(y, probs)) / jnp.sum(w)

    want = jax.tree_util.tree_map(lambda a, g: a - 0.5 * g, p0, jax.grad(weighted_mean_loss)(p0))
    for a, b in zip(jax.tree_util.tree_leaves(got.params), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_class_weight_is_the_sample_weight_of_each_examples_class():
    trainer, (x, y) = _logistic(), _separable()
    by_class, _ = trainer.fit(trainer.init(0, (3,)), x, y, epochs=2, batch_size=16, verbose=0,
                              class_weight={0: 1.0, 1: 3.0})
    by_example, _ = trainer.fit(trainer.init(0, (3,)), x, y, epochs=2, batch_size=16, verbose=0,
                                sample_weight=np.where(y == 1, 3.0, 1.0))
    for a, b in zip(jax.tree_util.tree_leaves(by_class.params), jax.tree_util.tree_leaves(by_example.params)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"^sample_weight must hold one finite weight >= 0 per example, "
                                         r"shape \(64,\), got shape \(3,\)$"):
        trainer.fit(trainer.init(0, (3,)), x, y, verbose=0, sample_weight=[1.0, 2.0, 3.0])


def test_custom_per_example_loss_gets_targets_aligned_as_built_in_losses():
    x, y = _separable()
    custom = lambda t, p: jnp.mean(jnp.square(t - p), axis=-1)  # (n,) - (n, 1) would broadcast to (n, n)
    runs = [_logistic(loss).fit(_logistic(loss).init(0, (3,)), x, y.astype(np.float32), epochs=2, batch_size=16,
                                verbose=0)[1].history["loss"] for loss in ("mse", custom)]
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-6)


def test_a_loss_that_reduces_to_a_scalar_is_refused_in_one_line():
    x, y = _separable()
    trainer = _logistic(lambda t, p: jnp.mean(jnp.square(t - p)))
    with pytest.raises(ValueError, match=r"^the loss must return one value per example, shape \(batch,\), got \(\)"):
        trainer.fit(trainer.init(0, (3,)), x, y, verbose=0)


def test_reusing_a_state_donated_to_fit_says_so_in_one_line():
    trainer, (x, y) = classifier(), blobs()
    state = trainer.init(0, (2,))
    history = trainer.fit(state, x, y, epochs=1, verbose=0)  # the Keras habit: the new state is dropped
    assert isinstance(history, tuple)
    message = r"^this TrainState was donated to an earlier fit .* `state, history = trainer.fit\(state, ...\)`$"
    for again in (lambda: trainer.fit(state, x, y, verbose=0), lambda: trainer.evaluate(state, x, y),
                  lambda: trainer.predict(state, x)):
        with pytest.raises(ValueError, match=message):
            again()


def test_one_hot_targets_with_the_sparse_loss_name_categorical_crossentropy():
    trainer, (x, y) = classifier(), blobs()
    with pytest.raises(ValueError, match=r"shaped like the outputs: for one-hot targets use categorical_crossentropy$") as e:
        trainer.fit(trainer.init(0, (2,)), x, np.eye(3, dtype=np.float32)[y], verbose=0)
    assert "\n" not in str(e.value)


def test_model_init_refuses_a_shape_without_the_none_batch_and_agrees_with_trainer_init():
    model = Sequential([Flatten(), Dense(10)])
    with pytest.raises(ValueError, match=r"^sequential.init takes the input shape with the batch dimension first, "
                                         r"as None: got \(28, 28, 1\); for examples of that shape pass "
                                         r"\(None, 28, 28, 1\)$"):
        model.init(jax.random.key(0), (28, 28, 1))
    _, params, _ = model.init(jax.random.key(0), (None, 28, 28, 1))
    state = Trainer(model).init(0, (28, 28, 1))
    assert jax.tree_util.tree_map(jnp.shape, params) == jax.tree_util.tree_map(jnp.shape, state.params)
    image = jaxnn.Input((28, 28, 1))
    with pytest.raises(ValueError, match=r"^functional.init takes the input shape with the batch dimension first"):
        jaxnn.Model(image, Dense(2)(Flatten()(image))).init(jax.random.key(0), (3, 28, 28, 1))


def test_plot_history_puts_whole_epochs_on_its_axis():
    fig = jaxnn.plot_history({"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.7, 0.6]})
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)

