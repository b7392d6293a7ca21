"""Rosenblatt's perceptron against a numpy loop and a hand trace; logic gates; the perceptron configs end to end."""
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxnn.data import toy
from jaxnn.runner import run
from jaxnn.tasks import perceptron_rule as perceptron
from config_files import load_config

ROOT = pathlib.Path(__file__).resolve().parents[2]



def numpy_perceptron(x, y, epochs, lr, orders=None):
    """Reference: the rule written out example by example, in float64."""
    w, b = np.zeros(x.shape[1]), 0.0
    mistakes = []
    for epoch in range(epochs):
        count = 0
        for i in (range(len(y)) if orders is None else orders[epoch]):
            error = y[i] - (1 if x[i] @ w + b > 0 else 0)
            w, b = w + lr * error * x[i], b + lr * error
            count += error != 0
        mistakes.append(count)
    return w, b, mistakes


def test_rule_matches_numpy_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3 > 0).astype(np.int32)
    params, mistakes = perceptron.fit(perceptron.init(3), x, y, epochs=6, learning_rate=0.25)
    w, b, ref_mistakes = numpy_perceptron(x.astype(np.float64), y, 6, 0.25)
    np.testing.assert_allclose(params["kernel"], w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(params["bias"], b, rtol=1e-5, atol=1e-5)
    assert mistakes.tolist() == ref_mistakes


def test_and_gate_hand_trace():
    # Zero weights, lr 1, rows 00 01 10 11 in order; traced by hand:
    # epoch 1: only 11 is missed -> w (1, 1), b 1; epochs 2-5 fix false positives; epoch 6 makes no mistake.
    x, y = toy.logic_gate("and")
    params, mistakes = perceptron.fit(perceptron.init(2), x, y, epochs=8)
    assert mistakes.tolist() == [1, 3, 3, 2, 1, 0, 0, 0]
    assert params["kernel"].tolist() == [2.0, 1.0] and float(params["bias"]) == -2.0


def test_shuffled_epochs_visit_each_example_once_in_a_fresh_order():
    x, y = toy.logic_gate("or", repeats=3)
    params, mistakes = perceptron.fit(perceptron.init(2), x, y, epochs=5, learning_rate=0.5, key=jax.random.key(3))
    orders = [np.asarray(jax.random.permutation(k, len(y))) for k in jax.random.split(jax.random.key(3), 5)]
    assert len({tuple(o) for o in orders}) > 1
    w, b, ref_mistakes = numpy_perceptron(x.astype(np.float64), y, 5, 0.5, orders)
    np.testing.assert_allclose(params["kernel"], w, atol=1e-6)
    np.testing.assert_allclose(params["bias"], b, atol=1e-6)
    assert mistakes.tolist() == ref_mistakes


@pytest.mark.parametrize("gate", ["and", "or"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_separable_gates_converge(gate, seed):
    x, y = toy.logic_gate(gate, repeats=2)
    params, mistakes = perceptron.fit(perceptron.init(2), x, y, epochs=30, key=jax.random.key(seed))
    assert perceptron.accuracy(params, x, y) == 1.0
    assert mistakes[-1] == 0
    np.testing.assert_array_equal(perceptron.predict(params, toy.INPUTS), toy.GATES[gate])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_xor_never_converges(seed):
    x, y = toy.logic_gate("xor", repeats=2)
    params, mistakes = perceptron.fit(perceptron.init(2), x, y, epochs=50, key=jax.random.key(seed))
    assert perceptron.accuracy(params, x, y) <= 0.75
    assert (np.asarray(mistakes) > 0).all()


def test_pure_and_learning_rate_only_scales_the_weights():
    x, y = toy.logic_gate("and")
    start = perceptron.init(2)
    big, m_big = perceptron.fit(start, x, y, epochs=10, learning_rate=1.0)
    small, m_small = perceptron.fit(start, x, y, epochs=10, learning_rate=0.01)
    assert start["kernel"].tolist() == [0.0, 0.0] and float(start["bias"]) == 0.0  # params in, new params out
    assert m_big.tolist() == m_small.tolist()
    np.testing.assert_allclose(small["kernel"], 0.01 * big["kernel"], rtol=1e-5)
    again, _ = perceptron.fit(start, x, y, epochs=10, learning_rate=1.0)
    np.testing.assert_array_equal(again["kernel"], big["kernel"])


@pytest.mark.parametrize("call, match", [
    (lambda p, x, y: perceptron.fit(p, x, y, epochs=0), "epochs must be a positive integer, got 0"),
    (lambda p, x, y: perceptron.fit(p, x, y, epochs=2, learning_rate=0.0), "learning_rate must be a positive number"),
    (lambda p, x, y: perceptron.fit(p, x[:, :1], y, epochs=2), r"x must be \(N, 2\) and y \(N,\) .*got x \(4, 1\)"),
    (lambda p, x, y: perceptron.fit(p, x, y[:3], epochs=2), r"got x \(4, 2\) and y \(3,\)"),
    (lambda p, x, y: perceptron.fit(p, x, y * 2, epochs=2), r"labels must be 0 or 1, found \[2\]"),
    (lambda p, x, y: perceptron.init(0), "num_features must be a positive integer, got 0"),
])
def test_perceptron_errors(call, match):
    x, y = toy.logic_gate("and")
    with pytest.raises(ValueError, match=match):
        call(perceptron.init(2), x, y)


def test_logic_gate_tables():
    for gate, expected in (("and", [0, 0, 0, 1]), ("or", [0, 1, 1, 1]), ("xor", [0, 1, 1, 0])):
        x, y = toy.logic_gate(gate)
        assert x.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and y.tolist() == expected
        assert x.dtype == np.float32 and y.dtype == np.int32
    x, y = toy.logic_gate("xor", repeats=3, seed=0)
    assert x.shape == (12, 2)
    assert (y == (x[:, 0] != x[:, 1])).all()  # rows stay paired with their labels when shuffled
    assert sorted(map(tuple, x.tolist())) == sorted(map(tuple, np.tile(toy.INPUTS, (3, 1)).tolist()))


@pytest.mark.parametrize("kwargs, match", [
    (dict(gate="nand"), "gate must be one of and, or, xor, got 'nand'"),
    (dict(gate="and", repeats=0), "repeats must be a positive integer, got 0"),
])
def test_logic_gate_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        toy.logic_gate(**kwargs)


def override(config, **fields):
    for path, value in fields.items():
        section, field = path.split("__")
        with config.unlocked():
            config[section][field] = value
    return config


@pytest.mark.parametrize("gate", ["and", "or"])
def test_perceptron_config_learns_the_gate(gate, tmp_path):
    results = run(override(load_config("perceptron_and"), dataset__name=gate), str(tmp_path), print_fn=None)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == results
    assert results["accuracy"] == 1.0 and results["converged_epoch"] is not None
    assert results["predictions"] == list(toy.GATES[gate])
    assert json.loads((tmp_path / "config.json").read_text())["dataset"]["name"] == gate


def test_xor_config_perceptron_fails_mlp_solves(tmp_path):
    results = run(load_config("xor_mlp"), str(tmp_path), print_fn=None)
    assert results["perceptron_accuracy"] <= 0.75
    assert results["mlp_accuracy"] == 1.0 and results["mlp_predictions"] == [0, 1, 1, 0]
    assert json.loads((tmp_path / "results.json").read_text())["mlp_accuracy"] == 1.0


def test_train_py_runs_the_or_override(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "--config=configs/perceptron_and.py",
                           "--config.dataset.name=or", f"--workdir={tmp_path / 'or'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, JAXNN_COMPILATION_CACHE=str(tmp_path / "xla")))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "or" / "results.json").read_text())["accuracy"] == 1.0


@pytest.mark.parametrize("name, fields, match", [
    ("perceptron_and", dict(dataset__name="nand"), "dataset.name must be one of and, or, xor, got 'nand'"),
    ("perceptron_and", dict(dataset__repeats=0), "dataset.repeats must be a positive integer, got 0"),
    ("perceptron_and", dict(train__epochs=0), "train.epochs must be a positive integer, got 0"),
    ("perceptron_and", dict(train__learning_rate=-1.0), "train.learning_rate must be a positive number, got -1.0"),
    ("perceptron_and", dict(train__epoch=3), "unknown field train.epoch; allowed: epochs, learning_rate, shuffle"),
    ("xor_mlp", dict(perceptron__epochs=-2), "perceptron.epochs must be a positive integer, got -2"),
    ("xor_mlp", dict(train__batch_size=5), "train.batch_size must be at most the 4 examples, got 5"),
    ("xor_mlp", dict(model__hiden_units=(4,)), "unknown field model.hiden_units"),
    ("xor_mlp", dict(loss__name="bce2"), "unknown loss 'bce2'"),
    ("xor_mlp", dict(optimizer__name="adamm"), "unknown optimizer 'adamm'"),
])
def test_bad_task_fields_stop_before_any_file(name, fields, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        run(override(load_config(name), **fields), str(tmp_path / "run"), print_fn=None)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, section, value, match", [
    ("perceptron_and", "task", "percepton", "unknown task 'percepton'; known: .*perceptron, perceptron_vs_mlp"),
    ("perceptron_and", "model", {"name": "mlp"}, "unknown config section 'model'; allowed: task, seed, dataset, train"),
    ("xor_mlp", "eval", {"batch_size": 4}, "unknown config section 'eval'; allowed: task, seed, dataset, perceptron"),
])
def test_bad_task_sections(name, section, value, match, tmp_path):
    config = load_config(name)
    with config.unlocked():
        config[section] = value
    with pytest.raises(ValueError, match=match):
        run(config, str(tmp_path / "run"), print_fn=None)
    assert not (tmp_path / "run").exists()
