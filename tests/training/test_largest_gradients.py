"""The largest-gradient listing finds a planted mislabeled example; its files."""
import json

import numpy as np
import pytest

from jaxnn import Dense, Sequential, Trainer, optimizers
from jaxnn.training.largest_gradients import gradient_norms, largest_gradients, write_largest_gradients
from jaxnn.training.per_example import example_norms
from jaxnn.training.steps import example_gradients


def _trained(x, y):
    trainer = Trainer(Sequential([Dense(16, "relu"), Dense(3, "softmax")]),
                      optimizer=optimizers.get("adam", learning_rate=0.01))
    state, _ = trainer.fit(trainer.init(0, (2,)), x, y, epochs=5, batch_size=32, verbose=0)
    return trainer, state


def test_a_planted_mislabeled_example_ranks_first():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600).astype(np.int32)
    x = (np.array([[6, 0], [-6, 0], [0, 7]], np.float32)[y] + rng.normal(size=(600, 2))).astype(np.float32)
    planted = int(np.argmin(np.where(y == 0, np.linalg.norm(x - [6, 0], axis=1), np.inf)))  # the most typical 0
    y = y.copy()
    y[planted] = 1
    trainer, state = _trained(x, y)
    rows = largest_gradients(trainer, state, x, y, k=5, batch_size=64)
    assert rows[0]["index"] == planted and rows[0]["label"] == 1 and rows[0]["predicted"] == 0
    norms = [r["norm"] for r in rows]
    assert norms == sorted(norms, reverse=True)
    # The norms are those of the per-example gradients at the final parameters (inference mode).
    grads, _ = example_gradients(trainer.model, trainer.loss_fn, state.params, {}, {"inputs": x[:7], "targets": y[:7]})
    np.testing.assert_allclose(gradient_norms(trainer, state, x[:7], y[:7], batch_size=4), example_norms(grads),
                               rtol=1e-5)


def test_ranking_by_loss_lists_the_examples_the_model_gets_most_wrong():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 600).astype(np.int32)
    x = (np.array([[6, 0], [-6, 0], [0, 7]], np.float32)[y] + rng.normal(size=(600, 2))).astype(np.float32)
    trainer, state = _trained(x, y)
    rows = largest_gradients(trainer, state, x, y, k=4, by="loss")
    probs = trainer.predict(state, x)
    losses = -np.log(probs[np.arange(600), y])
    assert [r["index"] for r in rows] == np.argsort(-losses, kind="stable")[:4].tolist()
    np.testing.assert_allclose([r["loss"] for r in rows], np.sort(losses)[::-1][:4], rtol=1e-5)
    norms = gradient_norms(trainer, state, x, y)
    assert [r["norm"] for r in rows] == [float(norms[r["index"]]) for r in rows]
    with pytest.raises(ValueError, match="^by must be 'norm' or 'loss', got 'grad'$"):
        largest_gradients(trainer, state, x, y, by="grad")


def test_listing_is_written_as_json_and_an_image_grid(tmp_path):
    images = np.random.default_rng(0).uniform(size=(10, 6, 6, 1)).astype(np.float32)
    rows = [{"index": 3, "label": 1, "predicted": 0, "norm": 2.5},
            {"index": 7, "label": 0, "predicted": 0, "norm": 1.0}]
    paths = write_largest_gradients(str(tmp_path), rows, images, class_names=("a", "b"))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["largest_gradients.json", "largest_gradients.png"]
    assert json.loads((tmp_path / "largest_gradients.json").read_text()) == rows
    assert (tmp_path / "largest_gradients.png").read_bytes()[:4] == b"\x89PNG"
    assert len(write_largest_gradients(str(tmp_path / "text"), rows, np.zeros((10, 20), np.int32))) == 1
