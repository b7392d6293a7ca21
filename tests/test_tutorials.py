"""Every tutorial in docs/tutorials/ runs to the end in its fast mode (a data subset, one epoch) and writes
every figure it saves. Each runs in its own interpreter, as a reader would run it; as many run at once
as there are CPU cores (a tutorial mostly waits on one core: imports, compiling, small steps)."""
import concurrent.futures
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("[0-9][0-9]_*.py"))
pytestmark = pytest.mark.slow


def _run(tutorial: pathlib.Path, out: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAXNN_TUTORIAL_FAST": "1", "JAXNN_TUTORIAL_OUT": str(out), "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(tutorial)], cwd=out, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """tutorial -> (its finished process, its output folder), all run once for the module."""
    outs = {t: tmp_path_factory.mktemp(t.stem) for t in TUTORIALS}
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {t: pool.submit(_run, t, out) for t, out in outs.items()}
        return {t: (futures[t].result(), outs[t]) for t in TUTORIALS}


def test_one_tutorial_per_chapter_of_the_notes():
    assert [p.stem.split("_", 1)[1] for p in TUTORIALS] == [
        "perceptron_xor", "mlp_fashion_mnist", "activations_losses", "optimizers", "callbacks_overfitting", "cnn",
        "rnn_text", "gan", "transfer_learning"]


@pytest.mark.parametrize("tutorial", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_in_fast_mode_and_writes_its_figures(tutorial, runs):
    source = tutorial.read_text()
    assert source.startswith("# %% [markdown]\n# # "), "a tutorial opens with a markdown cell and its title"
    figures = re.findall(r'save\(.*?, "([\w.]+\.png)"\)', source)
    assert figures, "a tutorial shows at least one figure"
    done, out = runs[tutorial]
    assert done.returncode == 0, done.stderr[-3000:]
    for name in figures:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
