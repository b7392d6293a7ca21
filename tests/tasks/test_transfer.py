"""The transfer task: models sharing layers by name, class subsets, freezing, the config end to end, bad fields."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnn import Model, Trainer, data, transfer
from jaxnn.runner import run
from jaxnn.tasks.transfer import _class_subset, transfer_models
from config_files import load_config, set_field

SPECS = [dict(type="Conv2D", filters=2, kernel_size=3, name="conv_1"), dict(type="Flatten"),
         dict(type="Dense", units=4, activation="relu", name="features")]


def test_transfer_model_reuses_the_base_layers_under_their_names():
    base, new = transfer_models(SPECS, (6, 6, 1), 3, 2)
    assert [n for n, _ in base.named_layers()] == ["image", "conv_1", "flatten", "features", "head"]
    assert [n for n, _ in new.named_layers()] == ["image", "conv_1", "flatten", "features", "new_head"]
    assert new.get_layer("conv_1") is base.get_layer("conv_1")
    _, base_params, _ = base.init(jax.random.key(0), (None, 6, 6, 1))
    _, new_params, _ = new.init(jax.random.key(1), (None, 6, 6, 1))
    assert base_params["head"]["kernel"].shape == (4, 3) and new_params["new_head"]["kernel"].shape == (4, 2)
    loaded = transfer.load_by_name(new_params, base_params)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(5, 6, 6, 1)), jnp.float32)
    # With the base's params, the transfer model's features are the base's: same layers, same numbers.
    features = lambda model, params: jax.jit(lambda p: model.apply(p, x)[0])(params)
    np.testing.assert_array_equal(features(Model(new.inputs, new.output_of("features")), loaded),
                                  features(Model(base.inputs, base.output_of("features")), base_params))


def test_class_subset_renumbers_and_samples():
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.array([5, 0, 7, 5, 9, 1, 7, 7, 2, 9], np.int32)
    xs, ys = _class_subset(x, y, (7, 5, 9), 0, None)
    np.testing.assert_array_equal(xs[:, 0], [0, 2, 3, 4, 6, 7, 9])
    np.testing.assert_array_equal(ys, [1, 0, 1, 2, 0, 0, 2])                 # 7 -> 0, 5 -> 1, 9 -> 2
    xs, ys = _class_subset(x, y, (7, 5, 9), 4, jax.random.key(0))
    assert len(ys) == 4 and set(xs[:, 0]) <= {0, 2, 3, 4, 6, 7, 9}
    np.testing.assert_array_equal(ys, np.array([1, 0, 1, 2, 0, 0, 2])[np.searchsorted([0, 2, 3, 4, 6, 7, 9], xs[:, 0])])
    with pytest.raises(ValueError, match=r"at most the 7 examples of classes \(7, 5, 9\), got 8"):
        _class_subset(x, y, (7, 5, 9), 8, jax.random.key(0))


def test_frozen_base_stays_bit_identical_while_the_head_learns():
    base, new = transfer_models(SPECS, (6, 6, 1), 3, 2)
    _, base_params, _ = base.init(jax.random.key(0), (None, 6, 6, 1))
    rng = np.random.default_rng(1)
    x, y = rng.uniform(size=(64, 6, 6, 1)).astype(np.float32), rng.integers(0, 2, 64).astype(np.int32)
    trainer = Trainer(new, loss="sparse_categorical_crossentropy", metrics=())
    state = trainer.init(jax.random.key(1), (6, 6, 1))
    params = transfer.load_by_name(state.params, base_params)
    tx = transfer.freeze(optax.adam(1e-2), params, ["conv_*", "features"])
    trainer = Trainer(new, loss="sparse_categorical_crossentropy", optimizer=tx, metrics=())
    head = np.array(params["new_head"]["kernel"], copy=True)
    state = state.replace(params=params, opt_state=tx.init(params))
    state, history = trainer.fit(state, x, y, epochs=3, batch_size=16, verbose=0)
    for name in ("conv_1", "features"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, state.params[name], base_params[name])
    assert not np.array_equal(state.params["new_head"]["kernel"], head)
    assert history.history["loss"][-1] < history.history["loss"][0]



def small_config():
    """The real config on 1,500 training and 500 test images, a few steps per phase."""
    config = load_config("fashion_mnist_transfer")
    config.dataset.train_split, config.dataset.test_split = "train[:1500]", "test[:500]"
    config.dataset.base_examples, config.dataset.target_examples = 256, 64
    config.pretrain.epochs = 1
    config.transfer.head_epochs, config.transfer.fine_tune_epochs, config.transfer.batch_size = 2, 1, 16
    return config


def test_transfer_config_end_to_end(tmp_path):
    workdir = str(tmp_path / "transfer")
    results = run(small_config(), workdir, print_fn=None)
    assert results["frozen_params_unchanged"] is True
    assert results["frozen_params"] == ["conv_1/bias", "conv_1/kernel", "conv_2/bias", "conv_2/kernel"]
    assert results["loaded_layers"] == ["conv_1", "conv_2", "features"]
    assert (results["base_train_examples"], results["target_train_examples"]) == (256, 64)
    _, y_test = data.load_arrays("fashion_mnist", "test[:500]")
    assert results["target_test_examples"] == int(np.isin(y_test, [5, 6, 7, 8, 9]).sum())
    for key in ("transfer_test_accuracy", "scratch_test_accuracy", "head_only_test_accuracy", "base_test_accuracy"):
        assert 0.0 <= results[key] <= 1.0
    assert 0 < results["train_seconds"] <= results["wall_seconds"]  # the four fit calls' time, within the run's
    with open(os.path.join(workdir, "history.json")) as f:
        history = json.load(f)
    # Scratch gets the transfer model's whole budget: head epochs + fine-tune epochs.
    assert {k: len(v["loss"]) for k, v in history.items()} == {"pretrain": 1, "head": 2, "fine_tune": 1, "scratch": 3}
    saved = transfer.load_params(os.path.join(workdir, "checkpoints", "base"))
    assert sorted(saved["params"]) == ["conv_1", "conv_2", "features", "head"]
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["base", "scratch", "transfer"]
    assert sorted(os.listdir(workdir)) == ["checkpoints", "config.json", "history.json", "results.json"]


def test_the_task_catches_a_frozen_parameter_that_moved(tmp_path, monkeypatch):
    """With freezing sabotaged (the optimizer left unmasked), the head phase's check stops the run."""
    monkeypatch.setattr(transfer, "freeze", lambda tx, params, patterns: tx)
    config = small_config()
    config.transfer.head_epochs = 1
    with pytest.raises(RuntimeError, match="frozen parameters changed while training the head: conv_1/bias"):
        run(config, str(tmp_path / "transfer"), print_fn=None)


@pytest.mark.parametrize("path,value,match", [
    ("dataset.target_classes", (4, 5, 6), r"dataset.target_classes must be classes not among dataset.base_classes"),
    ("dataset.base_classes", (0, 10), r"dataset.base_classes must be at least 2 distinct class ids in \[0, 10\)"),
    ("dataset.target_examples", 0, "dataset.target_examples must be a positive integer, got 0"),
    ("dataset.target_examples", 10_000, r"must be at most the \d+ examples of classes \(5, 6, 7, 8, 9\), got 10000"),
    ("dataset.name", "imdb_reviews", "dataset.name must be one of fashion_mnist, mnist"),
    ("dataset.classes", (1, 2), "unknown field dataset.classes; allowed: name, data_dir"),
    ("model.layers", [], "model.layers must be a non-empty list of layer specs"),
    ("model.layers", [dict(type="Dense", units=4, name="head")], "layer names must be unique within a model"),
    ("pretrain.epochs", 0, "pretrain.epochs must be a positive integer, got 0"),
    ("pretrain.optimizer", {"name": "adamm"}, "pretrain.optimizer: unknown optimizer 'adamm'"),
    ("transfer.freeze", ("conv_9",), r"transfer.freeze: freeze pattern\(s\) 'conv_9' match no parameter"),
    ("transfer.freeze", ("*",), "transfer.freeze must be patterns that leave the new head trainable"),
    ("transfer.freeze", (), "transfer.freeze must be a non-empty list of layer names or patterns"),
    ("transfer.fine_tune_optimizer", {"name": "adam", "beta": 0.5}, "transfer.fine_tune_optimizer: .*beta"),
    ("transfer.head_epochs", -1, "transfer.head_epochs must be a positive integer, got -1"),
    ("transfer.batch_size", 100, "transfer.batch_size must be at most the 64 training examples, got 100"),
    ("eval.batch_size", 0, "eval.batch_size must be a positive integer, got 0"),
    ("scratch", {}, "unknown config section 'scratch'"),
])
def test_bad_transfer_fields_stop_before_any_file(path, value, match, tmp_path):
    config = set_field(small_config(), path, value)
    workdir = tmp_path / "transfer"
    with pytest.raises(ValueError, match=match) as info:
        run(config, str(workdir), print_fn=None)
    assert "\n" not in str(info.value) and not workdir.exists()
