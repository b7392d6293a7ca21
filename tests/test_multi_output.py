"""Per-output losses and metrics for multi-output models, against hand-computed values and the Trainer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import Dense, Input, Model, MultiOutputLoss, OutputMetric, Trainer, optimizers
from jaxnn.metrics import Accuracy, MeanOf

PROBS = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
LABELS = jnp.array([0, 1])
SIZE_PRED = jnp.array([[1.0, 2.0], [0.0, -1.0]])
SIZE_TRUE = jnp.array([[1.5, 2.0], [1.0, -1.0]])
# per example: -log p[label] and mean squared error over the last axis
CE = np.array([-np.log(0.7), -np.log(0.1)])
MSE = np.array([0.25 / 2, 1.0 / 2])


@pytest.mark.parametrize("losses,weights,targets,preds", [
    ({"digit": "sparse_categorical_crossentropy", "size": "mse"}, {"size": 0.5},
     {"digit": LABELS, "size": SIZE_TRUE}, {"size": SIZE_PRED, "digit": PROBS}),
    (["sparse_categorical_crossentropy", "mse"], [1.0, 0.5], (LABELS, SIZE_TRUE), (PROBS, SIZE_PRED)),
])
def test_weighted_sum_of_per_output_losses(losses, weights, targets, preds):
    got = MultiOutputLoss(losses, loss_weights=weights)(targets, preds)
    np.testing.assert_allclose(got, CE + 0.5 * MSE, rtol=1e-6)


def test_an_output_without_a_loss_is_not_trained_and_extra_axes_are_averaged():
    loss = MultiOutputLoss({"a": None, "b": lambda t, p: (t - p) ** 2})
    got = loss({"a": PROBS, "b": jnp.zeros((2, 3))}, {"a": PROBS, "b": jnp.ones((2, 3)) * jnp.array([[1.0], [2.0]])})
    np.testing.assert_allclose(got, [1.0, 4.0])


@pytest.mark.parametrize("call,match", [
    (lambda: MultiOutputLoss({}), "takes a dict or list with one loss per output"),
    (lambda: MultiOutputLoss({"a": "mse"}, loss_weights={"b": 2.0}), "loss_weights names 'b', which are not outputs"),
    (lambda: MultiOutputLoss(["mse", "mse"], loss_weights=[1.0]), "loss_weights has 1 entries for 2 outputs"),
    (lambda: MultiOutputLoss({"a": None}), "needs a loss for at least one output"),
    (lambda: MultiOutputLoss({"a": "msee"}), "unknown loss 'msee'"),
    (lambda: MultiOutputLoss({"a": "mse", "b": "mse"})({"a": SIZE_TRUE, "b": SIZE_TRUE}, (SIZE_PRED, SIZE_PRED)),
     r"losses for outputs \['a', 'b'\], but the model's predictions are a tuple of 2"),
    (lambda: MultiOutputLoss({"a": "mse"})({"b": SIZE_TRUE}, {"a": SIZE_PRED}),
     r"but the targets are a dict with keys \['b'\]"),
    (lambda: MultiOutputLoss(["mse"])(SIZE_TRUE, SIZE_PRED), "but the model's predictions are one ArrayImpl"),
])
def test_multi_output_loss_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_output_metric_reads_one_output_and_is_named_like_keras():
    metric = OutputMetric("digit", "accuracy")
    assert metric.name == "digit_accuracy"
    stats = metric.update({"digit": jnp.array([0, 2])}, {"digit": PROBS, "size": SIZE_PRED})
    assert float(metric.result(stats)) == 1.0
    assert stats.keys() == Accuracy().update(LABELS, PROBS).keys()


def two_headed():
    x = Input(shape=(4,), name="x")
    h = Dense(16, "relu")(x)
    return Model(x, {"digit": Dense(3, "softmax", name="digit")(h), "size": Dense(2, name="size")(h)})


def data(n=256):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, {"digit": np.argmax(x[:, :3], axis=1).astype(np.int32), "size": x[:, 2:] * 2}


def test_train_step_of_a_two_output_model_lowers_the_loss():
    trainer = Trainer(two_headed(), optimizer=optimizers.get("adam", learning_rate=1e-2), metrics=[OutputMetric("digit", "accuracy")],
                      loss=MultiOutputLoss({"digit": "sparse_categorical_crossentropy", "size": "mse"},
                                           loss_weights={"size": 0.5}))
    state = trainer.init(jax.random.key(0), (4,))
    x, y = data()
    batch = {"inputs": jnp.asarray(x), "targets": jax.tree_util.tree_map(jnp.asarray, y)}
    losses = []
    for _ in range(100):
        state, stats = trainer.train_step(state, batch)
        losses.append(float(stats["loss"]["total"] / stats["loss"]["count"]))
    assert losses[-1] < 0.5 * losses[0]
    accuracy = stats["digit_accuracy"]
    assert float(accuracy["total"] / accuracy["count"]) > 0.8


def test_fit_evaluate_and_predict_with_dict_targets():
    trainer = Trainer(two_headed(), optimizer=optimizers.get("adam", learning_rate=1e-2),
                      metrics=[OutputMetric("digit", "accuracy")],
                      loss=MultiOutputLoss({"digit": "sparse_categorical_crossentropy", "size": "mse"}))
    x, y = data(300)
    state, history = trainer.fit(trainer.init(0, (4,)), x, y, epochs=20, batch_size=32, validation_split=0.2,
                                 verbose=0)
    assert history.history["val_digit_accuracy"][-1] > 0.8
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    preds = trainer.predict(state, x[:50], batch_size=16)
    assert preds["digit"].shape == (50, 3) and preds["size"].shape == (50, 2)
    scores = trainer.evaluate(state, x, y, batch_size=7)
    expected = float(np.mean(trainer.predict(state, x)["digit"].argmax(1) == y["digit"]))
    assert scores["digit_accuracy"] == pytest.approx(expected, abs=1e-6)


def test_each_outputs_unweighted_loss_is_logged_beside_the_weighted_total():
    trainer = Trainer(two_headed(), optimizer=optimizers.get("adam", learning_rate=1e-2), metrics=(),
                      loss=MultiOutputLoss({"digit": "sparse_categorical_crossentropy", "size": "mse"},
                                           loss_weights={"size": 0.5}))
    x, y = data(300)
    state, history = trainer.fit(trainer.init(0, (4,)), x, y, epochs=2, batch_size=32, validation_split=0.2,
                                 verbose=0)
    assert {"digit_loss", "size_loss", "val_digit_loss", "val_size_loss"} <= set(history.history)
    scores = trainer.evaluate(state, x, y, batch_size=7)
    preds = trainer.predict(state, x)
    ce = -np.log(np.take_along_axis(np.asarray(preds["digit"]), y["digit"][:, None], axis=1)).mean()
    mse = np.mean((np.asarray(preds["size"]) - y["size"]) ** 2)
    assert scores["digit_loss"] == pytest.approx(ce, rel=1e-5)
    assert scores["size_loss"] == pytest.approx(mse, rel=1e-5)
    assert scores["loss"] == pytest.approx(ce + 0.5 * mse, rel=1e-5)


def test_an_output_without_a_loss_logs_none_and_clashing_metric_names_are_refused():
    loss = MultiOutputLoss({"digit": "sparse_categorical_crossentropy", "size": None})
    assert [m.name for m in loss.output_metrics()] == ["digit_loss"]
    with pytest.raises(ValueError, match="two metrics would be logged as 'digit_loss'"):
        Trainer(two_headed(), loss=loss, optimizer="adam",
                metrics=[OutputMetric("digit", MeanOf("loss", lambda t, p: -jnp.log(p.max(-1))))])
    with pytest.raises(ValueError, match="metric 'accuracy' does not say which output it measures"):
        Trainer(two_headed(), loss=loss, optimizer="adam", metrics=["accuracy"])
    assert Trainer(two_headed(), loss=loss, optimizer="adam").metrics == ()  # no default metric for several outputs
    with pytest.raises(ValueError, match="two metrics would be logged as 'accuracy'"):
        Trainer(two_headed(), loss="mse", optimizer="adam", metrics=["accuracy", "accuracy"])
