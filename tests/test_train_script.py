"""`train.py` end to end on real Fashion-MNIST (a subset), its outputs, and its errors."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--config.dataset.train_split=train[:3000]", "--config.dataset.test_split=test[:1000]",
         "--config.train.epochs=2", "--config.model.hidden_units=(64,)"]


def train(workdir, *args, cache=None, config="configs/fashion_mnist_mlp.py"):
    env = dict(os.environ, JAXNN_COMPILATION_CACHE=str(cache or pathlib.Path(workdir).parent / "xla"))
    return subprocess.run([sys.executable, "train.py", f"--config={config}", f"--workdir={workdir}", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_trains_writes_outputs_and_reuses_compiled_steps(tmp_path):
    cache = tmp_path / "xla"
    proc = train(tmp_path / "run", *SMALL, cache=cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Total params" in proc.stdout and "Epoch 2/2" in proc.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test_accuracy"] > 0.6  # chance is 0.1
    assert results["epochs"] == 2 and results["test_examples"] == 1000
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 2 for v in history.values())
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "run" / "checkpoints" / "final").is_dir()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".tmp")]

    entries = set(os.listdir(cache))
    assert entries
    again = train(tmp_path / "run2", *SMALL, cache=cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(os.listdir(cache)) == entries  # nothing compiled anew


@pytest.mark.parametrize("args,match", [
    (["--config.train.epocs=3"], "epocs"),
    (["--config.train.batch_size=0"], "error: train.batch_size must be a positive integer, got 0"),
    (["--config.model.activation=relx"], "error: unknown activation 'relx'"),
    (["--config.optimizer.name=adamax2"], "error: unknown optimizer 'adamax2'"),
])
def test_bad_overrides_stop_before_the_workdir_is_made(tmp_path, args, match):
    proc = train(tmp_path / "run", *args)
    assert proc.returncode != 0
    assert match in proc.stderr
    assert not (tmp_path / "run").exists()
