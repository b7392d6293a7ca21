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
