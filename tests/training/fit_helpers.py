"""Shared by the training tests: three Gaussian blobs, a small classifier, and a quiet fit on them."""
import jax
import numpy as np

from jaxnn import Dense, Dropout, Sequential, Trainer, optimizers
from jaxnn.training.callbacks import LambdaCallback


def blobs(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    centers = np.array([[2, 0], [-2, 0], [0, 2.5]], np.float32)
    return (centers[y] + rng.normal(size=(n, 2))).astype(np.float32), y


def classifier(hidden=16, optimizer=None, **kw):
    return Trainer(Sequential([Dense(hidden, "relu"), Dropout(0.2), Dense(3, "softmax")]),
                   optimizer=optimizer or optimizers.get("adam", learning_rate=0.01), **kw)


def fit(trainer, callbacks=(), epochs=6, **kw):
    x, y = blobs()
    kw.setdefault("validation_split", 0.2)
    return trainer.fit(trainer.init(0, (2,)), x, y, epochs=epochs, batch_size=32, callbacks=list(callbacks),
                       verbose=0, **kw)


def scripted(key, values):
    """Overwrite logs[key] with a scripted value per epoch (runs before the callbacks listed after it)."""
    return LambdaCallback(on_epoch_end=lambda run, epoch, logs: logs.__setitem__(key, values[epoch]))


def params(state):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(state.params)]
