"""What a train.py classify run leaves for its user: the evaluation report and a whole model that loads."""
import json
import os
import pathlib
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

import jaxnn
from jaxnn.data.specs import dataset_info

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ["--config.dataset.train_split=train[:2000]", "--config.dataset.test_split=test[:500]",
        "--config.train.epochs=1", "--config.model.hidden_units=(32,)", "--config.train.tensorboard=False"]


@pytest.mark.slow
def test_a_run_writes_the_report_and_a_model_that_loads(tmp_path):
    workdir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", "--config=configs/fashion_mnist_mlp.py", f"--workdir={workdir}",
                           "--quiet", *TINY], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, JAXNN_COMPILATION_CACHE=str(tmp_path / "xla")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert list(results) == ["test_loss", "test_accuracy", "epochs", "wall_seconds", "train_seconds",
                             "train_examples", "test_examples", "per_class", "macro_avg", "confusion_matrix"]
    matrix = np.array(results["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 500
    assert np.trace(matrix) / 500 == pytest.approx(results["test_accuracy"], abs=1e-6)
    names = dataset_info("fashion_mnist").class_names
    assert list(results["per_class"]) == list(names)
    recalls = [results["per_class"][n]["recall"] for n in names]
    np.testing.assert_allclose(recalls, np.diag(matrix) / matrix.sum(axis=1))
    for name in ("confusion_matrix.png", "errors.png"):
        image = matplotlib.image.imread(workdir / name)
        assert image.ndim == 3 and image.std() > 0

    model, variables = jaxnn.load_model(workdir / "model")
    run_model, run_variables = jaxnn.load_run(workdir)
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(model.apply(variables["params"], x, state=variables["model_state"])[0],
                                  run_model.apply(run_variables["params"], x, state=run_variables["model_state"])[0])
    assert json.loads((workdir / "model" / "config.json").read_text()) == \
        json.loads((workdir / "config.json").read_text())
