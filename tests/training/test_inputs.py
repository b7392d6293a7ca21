"""What fit, evaluate and predict refuse or warn about in the arrays they are given (jaxnn.training.inputs)."""
import warnings

import jax
import numpy as np
import pytest

from jaxnn import Trainer
from jaxnn.layers import Dense, Embedding, Flatten, GlobalAveragePooling1D
from jaxnn.models import Sequential

N, CLASSES = 64, 10
RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 1, (N, 4, 4)).astype(np.float32)
LABELS = RNG.integers(0, CLASSES, N).astype(np.int32)


@pytest.fixture(scope="module")
def trainer():
    return Trainer(Sequential([Flatten(), Dense(CLASSES, "softmax")]), optimizer="sgd")


@pytest.fixture
def mlp(trainer):
    return trainer, trainer.init(0, (4, 4))  # fresh: fit donates its state


def nan_at(index):
    x = IMAGES.copy()
    x[index] = np.nan
    return x


# (id, inputs, labels, a piece of the one-line ValueError)
API_CASES = [
    ("uint8_images", (IMAGES * 255).astype(np.uint8), LABELS, "inputs are uint8, but the model's first layer"),
    ("int32_images", (IMAGES * 255).astype(np.int32), LABELS, "inputs are int32"),
    ("bool_images", IMAGES > 0.5, LABELS, "inputs are bool"),
    ("string_images", np.full((N, 4, 4), "a"), LABELS, "inputs must be numbers"),
    ("object_images", IMAGES.astype(object), LABELS, "inputs must be numbers"),
    ("complex_images", IMAGES.astype(np.complex64), LABELS, "inputs must be numbers"),
    ("fractional_labels", IMAGES, LABELS + 0.5, r"labels must be whole class ids for a sparse loss, found \[0.5"),
    ("label_too_large", IMAGES, np.where(np.arange(N) == 3, 10, LABELS), r"labels must be in \[0, 10\)"),
    ("float_label_negative", IMAGES, np.where(np.arange(N) == 3, -1.0, LABELS), r"labels must be in \[0, 10\)"),
    ("string_labels", IMAGES, LABELS.astype(str), "labels must be numbers"),
    ("wrong_shape", RNG.uniform(0, 1, (N, 5, 5)).astype(np.float32), LABELS, "do not fit the model"),
    ("count_mismatch", IMAGES, LABELS[:-1], "must share their first"),
    ("label_column_too_large", IMAGES, np.where(np.arange(N) == 3, 10, LABELS)[:, None], r"labels must be in \[0, 10\)"),
    ("label_column_fractional", IMAGES, (LABELS + 0.5)[:, None], "labels must be whole class ids"),
    ("no_examples", IMAGES[:0], LABELS[:0], r"the inputs hold no examples \(their first dimension is 0\)"),
    ("ragged_list", [[0.0] * 16, [0.0] * 15] * 32, LABELS, "a nested list of numbers must be rectangular"),
]


@pytest.mark.parametrize("method", ["fit", "evaluate"])
@pytest.mark.parametrize("x,y,match", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_bad_arrays_are_refused_in_one_line(mlp, method, x, y, match):
    trainer, state = mlp
    call = {"fit": lambda: trainer.fit(state, x, y, epochs=1, batch_size=16, verbose=0),
            "evaluate": lambda: trainer.evaluate(state, x, y)}[method]
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("x", [(IMAGES * 255).astype(np.uint8), IMAGES.astype(object)], ids=["uint8", "object"])
def test_predict_refuses_what_fit_refuses(mlp, x):
    trainer, state = mlp
    with pytest.raises(ValueError, match="inputs"):
        trainer.predict(state, x)


def test_integer_ids_are_taken_by_a_model_that_starts_with_an_embedding():
    trainer = Trainer(Sequential([Embedding(20, 4), GlobalAveragePooling1D(), Dense(2, "softmax")]), optimizer="sgd")
    state = trainer.init(0, (6,))
    ids = RNG.integers(0, 20, (N, 6)).astype(np.int32)
    labels = RNG.integers(0, 2, N).astype(np.int32)
    state, history = trainer.fit(state, ids, labels, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert trainer.predict(state, ids).shape == (N, 2)


def test_whole_float_labels_are_class_ids(mlp):
    trainer, state = mlp
    as_int = trainer.evaluate(state, IMAGES, LABELS)
    assert trainer.evaluate(state, IMAGES, LABELS.astype(np.float32)) == as_int


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_nan_and_inf_are_warned_about_with_their_count(mlp, method):
    trainer, state = mlp
    x = nan_at((slice(0, 3), 0, 0))     # three examples with one NaN each
    x[5, 1, 1] = x[5, 2, 2] = np.inf    # one more example with two infs
    calls = {"fit": lambda: trainer.fit(state, x, LABELS, epochs=1, batch_size=16, verbose=0),
             "evaluate": lambda: trainer.evaluate(state, x, LABELS),
             "predict": lambda: trainer.predict(state, x)}
    with pytest.warns(UserWarning, match=rf"inputs hold 5 NaN or inf values \(in 4 of {N} examples\)"):
        calls[method]()


def test_clean_data_gives_no_warning(mlp):
    trainer, state = mlp
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.evaluate(state, IMAGES, LABELS)


def test_device_arrays_are_checked_once_per_trainer_and_host_arrays_every_time(monkeypatch):
    trainer = Trainer(Sequential([Flatten(), Dense(CLASSES, "softmax")]), optimizer="sgd")
    checks = []
    real = Trainer._check_data
    monkeypatch.setattr(Trainer, "_check_data", lambda self, *a: checks.append(1) or real(self, *a))
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4, 4), dtype=np.float32), rng.integers(0, CLASSES, 64).astype(np.int32)
    placed = jax.device_put((x, y))
    state = trainer.init(0, (4, 4))
    for data in (placed, placed, (x, y), (x, y)):
        state, _ = trainer.fit(state, *data, epochs=1, verbose=0)
    assert len(checks) == 3  # the placed pair once, the numpy pair (mutable) each time
    state, _ = trainer.fit(state, *jax.device_put((x, y)), epochs=1, verbose=0)
    assert len(checks) == 4  # other arrays: checked


def test_python_lists_are_taken_as_arrays(mlp):
    trainer, state = mlp
    as_arrays = trainer.evaluate(state, IMAGES, LABELS)
    assert trainer.evaluate(state, IMAGES.tolist(), LABELS.tolist()) == as_arrays
    np.testing.assert_array_equal(trainer.predict(state, IMAGES.tolist()), trainer.predict(state, IMAGES))
    with pytest.raises(ValueError, match="the inputs hold no examples"):
        trainer.predict(state, IMAGES[:0])


def test_a_sparse_loss_on_one_sigmoid_unit_refuses_labels_of_1():
    trainer = Trainer(Sequential([Flatten(), Dense(1, "sigmoid")]), loss="sparse_categorical_crossentropy",
                      optimizer="sgd")
    with pytest.raises(ValueError, match=r"^labels must be in \[0, 1\) for a model with 1 outputs, found \[1\]$"):
        trainer.fit(trainer.init(0, (4, 4)), IMAGES, LABELS % 2, epochs=1, verbose=0)


def test_each_output_of_a_multi_output_model_has_its_labels_checked():
    from jaxnn import Input, Model
    from jaxnn.multi_output import MultiOutputLoss

    inputs = Input((4, 4))
    hidden = Dense(8, "relu")(Flatten()(inputs))
    model = Model(inputs, {"c": Dense(3, "softmax")(hidden), "r": Dense(1)(hidden)})
    trainer = Trainer(model, loss=MultiOutputLoss({"c": "sparse_categorical_crossentropy", "r": "mse"}),
                      optimizer="sgd", metrics=())
    state, r = trainer.init(0, (4, 4)), np.zeros((N, 1), np.float32)
    with pytest.raises(ValueError, match=r"^labels must be in \[0, 3\) for a model with 3 outputs, found \[5\]$"):
        trainer.evaluate(state, IMAGES, {"c": np.full(N, 5), "r": r})
    with pytest.raises(ValueError, match="labels must be whole class ids"):
        trainer.evaluate(state, IMAGES, {"c": np.full(N, 1.5), "r": r})
    assert set(trainer.evaluate(state, IMAGES, {"c": LABELS % 3, "r": r})) == {"loss", "c_loss", "r_loss"}
    one_loss = Trainer(model, loss="mse", optimizer="sgd", metrics=())
    with pytest.raises(ValueError, match=r"^the model has 2 outputs, and loss 'mean_squared_error' takes one: give "
                                         r"loss=MultiOutputLoss"):
        one_loss.evaluate(state, IMAGES, {"c": r, "r": r})


def test_callbacks_that_are_no_list_are_named(mlp):
    from jaxnn.callbacks import EarlyStopping, ReduceLROnPlateau

    trainer, state = mlp
    with pytest.raises(ValueError, match=r"^callbacks must be a list of callbacks, got EarlyStopping: write "
                                         r"callbacks=\[EarlyStopping\(...\)\]$"):
        trainer.fit(state, IMAGES, LABELS, callbacks=EarlyStopping(), verbose=0)
    with pytest.raises(ValueError, match="ReduceLROnPlateau patience must be a non-negative integer, got -1"):
        ReduceLROnPlateau(patience=-1)
