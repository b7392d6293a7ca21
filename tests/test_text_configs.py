"""The text configs: exact seed models, end to end through `run` on TFDS mock data, and their errors."""
import json
import math

import pytest
import tensorflow_datasets as tfds

from jaxnn import data, summary
from jaxnn.config import build
from jaxnn.runner import run
from config_files import load_config

TEXT_CONFIGS = ["imdb_multihot", "imdb_lstm", "news_onehot", "news_sparse"]



def tiny(config, **dataset):
    """A few small steps: small vocabulary and batches (the mock splits have 40 examples)."""
    with config.unlocked():
        config.dataset.update(num_words=50, **dataset)
        config.train.update(epochs=2, batch_size=8, validation_split=0.25)
        config.eval.batch_size = 16
        for layer in config.model.layers:
            if layer["type"] == "Embedding":
                layer["input_dim"] = 50
    return config


@pytest.mark.parametrize("name, input_shape, params", [
    ("imdb_multihot", (10_000,), 160_305),  # Keras's count for the seed's 16-16-1 model
    ("imdb_lstm", (500,), 10_000 * 32 + 4 * 32 * (32 + 32 + 1) + 33),
    ("news_onehot", (10_000,), 10_000 * 64 + 64 + 64 * 64 + 64 + 64 * 4 + 4),
    ("news_sparse", (10_000,), 10_000 * 64 + 64 + 64 * 64 + 64 + 64 * 4 + 4),
])
def test_configs_build_the_seed_models(name, input_shape, params):
    config = load_config(name)
    experiment = build(config)
    info = data.dataset_info(config.dataset.name, **data.dataset_options(experiment.dataset))
    assert info.input_shape == input_shape
    assert f"Total params: {params:,}" in summary(experiment.model, input_shape, print_fn=None)


def test_news_configs_differ_only_in_labels_and_loss():
    onehot, sparse = load_config("news_onehot").to_dict(), load_config("news_sparse").to_dict()
    assert (onehot["dataset"].pop("label_encoding"), sparse["dataset"].pop("label_encoding")) == ("one_hot", "integer")
    assert (onehot["loss"], sparse["loss"]) == ({"name": "categorical_crossentropy"},
                                                {"name": "sparse_categorical_crossentropy"})
    onehot.pop("loss"), sparse.pop("loss")
    assert onehot == sparse


@pytest.mark.parametrize("name, dataset", [
    ("imdb_multihot", {}),
    ("imdb_lstm", {"maxlen": 12}),
])
def test_imdb_configs_end_to_end_on_mock_data(name, dataset, tmp_path):
    with tfds.testing.mock_data(num_examples=40):
        results = run(tiny(load_config(name), **dataset), str(tmp_path), print_fn=None)
    assert results["train_examples"] == 40 and results["test_examples"] == 40 and results["epochs"] == 2
    assert math.isfinite(results["test_loss"]) and 0.0 <= results["test_accuracy"] <= 1.0
    assert json.loads((tmp_path / "results.json").read_text()) == results
    history = json.loads((tmp_path / "history.json").read_text())
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)
    assert all(math.isfinite(v) for v in history["loss"])
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "checkpoints" / "final").is_dir()
    assert json.loads((tmp_path / "config.json").read_text())["dataset"]["num_words"] == 50


def test_one_hot_and_integer_label_paths_agree_on_mock_data(tmp_path):
    """Same data, model and seed: categorical CE on one-hot labels equals sparse CE on their integers."""
    outcomes = {}
    for name in ("news_onehot", "news_sparse"):
        with tfds.testing.mock_data(num_examples=40):
            outcomes[name] = run(tiny(load_config(name)), str(tmp_path / name), print_fn=None)
        outcomes[name]["history"] = json.loads((tmp_path / name / "history.json").read_text())
    onehot, sparse = outcomes["news_onehot"], outcomes["news_sparse"]
    assert onehot["test_loss"] == pytest.approx(sparse["test_loss"], rel=1e-5)
    assert onehot["test_accuracy"] == sparse["test_accuracy"]
    for key in ("loss", "val_loss", "accuracy"):
        assert onehot["history"][key] == pytest.approx(sparse["history"][key], rel=1e-5)


def _set(config, path, value):
    section, field = path.split(".")
    with config.unlocked():
        config[section][field] = value
    return config


@pytest.mark.parametrize("name, path, value, match", [
    ("imdb_multihot", "dataset.encoding", "tfidf", "dataset.encoding must be one of multi_hot, sequence"),
    ("imdb_multihot", "dataset.encoding", "sequence", "dataset.maxlen must be a positive integer for encoding"),
    ("imdb_lstm", "dataset.maxlen", 0, "dataset.maxlen must be a positive integer .*got 0"),
    ("news_onehot", "dataset.label_encoding", "integer",
     r"targets of shape \(\) \(per example\) do not fit the model's output \(4,\)"),
    ("news_sparse", "loss.name", "categorical_crossentropy", r"targets of shape \(\) .* do not fit"),
    ("news_onehot", "dataset.name", "mnist", "unknown field dataset.encoding: mnist takes no encoding options"),
])
def test_bad_text_fields_stop_before_any_file(name, path, value, match, tmp_path):
    config = _set(load_config(name), path, value)
    with pytest.raises(ValueError, match=match):
        run(config, str(tmp_path / "run"), print_fn=None)
    assert not (tmp_path / "run").exists()
