"""`python -m jaxnn.predict` and `jaxnn.load_run` on a train.py workdir built by hand (config.json, checkpoints/final)."""
import os
import pathlib
import re
import runpy
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

import jaxnn
from jaxnn.checkpoint import save_tree
from jaxnn.config import build
from jaxnn.data.specs import dataset_info
from jaxnn.predict import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAMES = dataset_info("fashion_mnist").class_names


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = runpy.run_path(str(ROOT / "configs" / "fashion_mnist_mlp.py"))["get_config"]()
    config.model.hidden_units, config.model.dropout = (16,), 0.0
    model = build(config).model
    _, params, state = model.init(jax.random.key(0), (None, 28, 28, 1))
    save_tree(workdir / "checkpoints" / "final", {"params": params, "model_state": state})
    (workdir / "config.json").write_text(config.to_json(indent=2))
    return workdir


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A 28x28 grayscale PNG, a flat gray 56x56 RGB PNG (converted and resized to a flat gray 28x28), a uint8 batch."""
    folder = tmp_path_factory.mktemp("inputs")
    pixels = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    Image.fromarray(pixels[0]).save(folder / "shoe.png")
    Image.fromarray(np.full((56, 56, 3), 128, np.uint8)).save(folder / "gray.png")
    np.save(folder / "batch.npy", pixels)
    expected = np.concatenate([pixels[:1] / 255, np.full((1, 28, 28), 128 / 255), pixels / 255])
    return folder, expected[..., None].astype(np.float32)


def _top(model, variables, x, k=3) -> list[list[tuple[str, float]]]:
    probs = np.asarray(model.apply(variables["params"], x, state=variables["model_state"])[0])
    return [[(NAMES[c], row[c]) for c in np.argsort(-row)[:k]] for row in probs]


def _parse(line: str) -> tuple[str, list[tuple[str, float]]]:
    label, rest = line.split(": ", 1)
    return label, [(item.rsplit(" ", 1)[0], float(item.rsplit(" ", 1)[1])) for item in rest.split(", ")]


def test_load_run_gives_the_saved_model_and_variables(run_dir):
    model, variables = jaxnn.load_run(run_dir)
    saved = jaxnn.checkpoint.load_tree(run_dir / "checkpoints" / "final")
    assert [type(layer).__name__ for layer in model.layers] == ["Flatten", "Dense", "Dense"]
    np.testing.assert_array_equal(variables["params"]["dense"]["kernel"], saved["params/dense/kernel"])


def test_cli_prints_the_top_classes_of_images_and_npy_batches(run_dir, images):
    folder, x = images
    files = [folder / "shoe.png", folder / "gray.png", folder / "batch.npy"]
    proc = subprocess.run([sys.executable, "-m", "jaxnn.predict", "--workdir", str(run_dir), *map(str, files)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    labels = [str(files[0]), str(files[1])] + [f"{files[2]}[{i}]" for i in range(3)]
    want = _top(*jaxnn.load_run(run_dir), x)
    assert [_parse(line)[0] for line in lines] == labels
    for line, top in zip(lines, want):
        got = _parse(line)[1]
        assert [name for name, _ in got] == [name for name, _ in top]
        np.testing.assert_allclose([p for _, p in got], [p for _, p in top], atol=1e-4)


def test_top_k_and_a_single_float_example(run_dir, tmp_path, capsys):
    x = np.random.default_rng(1).random((28, 28, 1), dtype=np.float32)
    np.save(tmp_path / "one.npy", x)
    assert main(["--workdir", str(run_dir), "--top_k", "5", str(tmp_path / "one.npy")]) == 0
    label, top = _parse(capsys.readouterr().out.strip())
    assert label == str(tmp_path / "one.npy")
    assert [name for name, _ in top] == [name for name, _ in _top(*jaxnn.load_run(run_dir), x[None], k=5)[0]]


@pytest.mark.parametrize("make,match", [
    (lambda d: np.save(d / "x.npy", np.zeros((5, 32, 32))), "holds shape (5, 32, 32); the model takes examples of "
                                                           "shape (28, 28, 1)"),
    (lambda d: (d / "x.png").write_text("not an image"), "cannot read {d}/x.png as an image"),
    (lambda d: np.save(d / "x.npy", np.array(["a", "b"])), "holds <U1 values; the model takes numbers (float32)"),
    (lambda d: None, "no such file: {d}/x.png"),
])
def test_bad_inputs_are_one_line_and_exit_2(run_dir, tmp_path, capsys, make, match):
    make(tmp_path)
    name = "x.npy" if (tmp_path / "x.npy").exists() else "x.png"
    assert main(["--workdir", str(run_dir), str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and match.format(d=tmp_path) in err


def test_a_workdir_that_is_no_run_and_bad_arguments(tmp_path, capsys):
    assert main(["--workdir", str(tmp_path), "x.png"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path} is not a finished train.py run (no config.json)\n"
    with pytest.raises(SystemExit) as exit_info:
        main(["--workdir", str(tmp_path), "--top_k", "0", "x.png"])
    assert exit_info.value.code == 2
    assert "--top_k must be a positive integer, got 0" in capsys.readouterr().err


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A sweep's workdir of 3 members by hand: config.json, checkpoints/final with the member axis, and
    model/member_<i>/ as the classify task writes them."""
    workdir = tmp_path_factory.mktemp("sweep")
    config = runpy.run_path(str(ROOT / "configs" / "fashion_mnist_mlp.py"))["get_config"]()
    config.model.hidden_units, config.model.dropout = (16,), 0.0
    config.sweep = dict(seeds=3)
    model = build(config).model
    members = [model.init(jax.random.key(s), (None, 28, 28, 1))[1:] for s in range(3)]
    stacked = jax.tree_util.tree_map(lambda *a: np.stack(a), *[{"params": p, "model_state": s} for p, s in members])
    save_tree(workdir / "checkpoints" / "final", stacked)
    (workdir / "config.json").write_text(config.to_json(indent=2))
    for m, (params, state) in enumerate(members):
        jaxnn.save_model(workdir / "model" / f"member_{m}", model, {"params": params, "model_state": state},
                         input_shape=(28, 28, 1), config=config)
    probs = lambda x: [np.asarray(model.apply(p, x, state=s)[0]) for p, s in members]
    return workdir, probs


def _printed(capsys, k=10):
    return [dict(_parse(line)[1]) for line in capsys.readouterr().out.strip().splitlines()]


def test_a_sweep_predicts_as_its_ensemble_or_as_one_member(sweep_dir, tmp_path, capsys):
    workdir, probs = sweep_dir
    x = np.random.default_rng(2).random((4, 28, 28, 1), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    members = probs(x)
    assert main(["--workdir", str(workdir), "--top_k", "10", str(tmp_path / "x.npy")]) == 0
    ensemble = np.mean(members, axis=0)
    for row, got in zip(ensemble, _printed(capsys)):
        np.testing.assert_allclose([got[name] for name in NAMES], row, atol=1e-4)
    assert not np.allclose(members[0], ensemble, atol=1e-3)  # the members differ: the mean is not one of them
    assert main(["--workdir", str(workdir), "--member", "2", "--top_k", "10", str(tmp_path / "x.npy")]) == 0
    for row, got in zip(members[2], _printed(capsys)):
        np.testing.assert_allclose([got[name] for name in NAMES], row, atol=1e-4)
    # A member's own model directory (model/member_1/, with the sweep's config beside it) predicts as that member.
    assert main(["--workdir", str(workdir / "model" / "member_1"), "--top_k", "10", str(tmp_path / "x.npy")]) == 0
    for row, got in zip(members[1], _printed(capsys)):
        np.testing.assert_allclose([got[name] for name in NAMES], row, atol=1e-4)


def test_a_bad_member_is_one_line(sweep_dir, run_dir, tmp_path, capsys):
    workdir, _ = sweep_dir
    np.save(tmp_path / "x.npy", np.zeros((28, 28, 1), np.float32))
    assert main(["--workdir", str(workdir), "--member", "3", str(tmp_path / "x.npy")]) == 2
    assert capsys.readouterr().err == f"error: --member 3: {workdir} has members 0 to 2\n"
    assert main(["--workdir", str(run_dir), "--member", "0", str(tmp_path / "x.npy")]) == 2
    assert capsys.readouterr().err == f"error: --member 0: {run_dir} has one model, not a sweep's members\n"
    with pytest.raises(ValueError, match="is a saved model, not a train.py workdir: load it with jaxnn.load_model"):
        jaxnn.load_run(workdir / "model" / "member_0")


@pytest.mark.parametrize("text", ["{", "[1, 2]"])
def test_a_damaged_config_json_is_named(run_dir, tmp_path, text):
    workdir = tmp_path / "run"
    shutil.copytree(run_dir, workdir)
    (workdir / "config.json").write_text(text)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(workdir / 'config.json'))} (is not valid JSON|holds a JSON "
                                         r"list).*damaged"):
        jaxnn.load_run(workdir)
