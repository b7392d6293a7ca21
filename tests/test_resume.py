"""Exact resume of real `train.py` runs: SIGKILL at three points (mid-save, mid-epoch, right after an epoch's
checkpoint), each resumed with the same --workdir, ends bit-identical to an uninterrupted run; SIGTERM saves
and exits within seconds; a workdir of another config is refused and left untouched."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxnn.checkpoint import load_tree

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 56  # 2000 examples, 10% held out for validation, batches of 32
TINY = ["--config.dataset.train_split=train[:2000]", "--config.dataset.test_split=test[:500]",
        "--config.train.epochs=3", "--config.model.hidden_units=(32,)", "--config.train.batch_size=32",
        "--config.checkpoint.every_steps=8", "--config.checkpoint.keep=2"]

pytestmark = pytest.mark.slow


def _command(workdir, *overrides):
    return [sys.executable, "train.py", "--config=configs/fashion_mnist_mlp.py", f"--workdir={workdir}", *TINY,
            *overrides]


def _env(cache):
    return dict(os.environ, JAXNN_COMPILATION_CACHE=str(cache))


def _train(workdir, cache, *overrides):
    proc = subprocess.run(_command(workdir, *overrides), cwd=ROOT, env=_env(cache), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _start_and_signal_when(workdir, cache, ready, sig):
    """Start train.py, send `sig` as soon as `ready(checkpoints_dir)` holds; returns (proc, stdout, stderr, seconds)."""
    proc = subprocess.Popen(_command(workdir), cwd=ROOT, env=_env(cache), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    checkpoints = pathlib.Path(workdir) / "checkpoints"
    deadline = time.monotonic() + 300
    while not ready(checkpoints):
        assert proc.poll() is None, "train.py ended before the signal point"
        assert time.monotonic() < deadline, "the signal point never came"
        time.sleep(0.002)
    proc.send_signal(sig)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=120)
    return proc, out, err, time.monotonic() - sent


def _complete(step):
    return lambda d: (d / f"step_{step:09d}" / "meta.json").is_file()


def _saving_after(step):
    """A step directory after `step` whose meta.json is not written yet: orbax is writing its arrays."""
    return lambda d: d.is_dir() and any(p.name.startswith("step_") and int(p.name[-9:]) > step
                                        and not (p / "meta.json").exists() for p in d.iterdir())


def _final(workdir):
    return load_tree(pathlib.Path(workdir) / "checkpoints" / "final")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    _train(root / "whole", root / "xla")
    return root


@pytest.mark.parametrize("name,ready", [
    ("mid-save", _saving_after(16)),                           # inside the save of a step checkpoint
    ("mid-epoch", _complete(STEPS_PER_EPOCH + 24)),            # epoch 2, three checkpoints in
    ("after-epoch", _complete(2 * STEPS_PER_EPOCH)),           # right after epoch 2's checkpoint
])
def test_sigkill_then_resume_is_bit_identical(baseline, name, ready):
    workdir = baseline / name
    proc, _, _, _ = _start_and_signal_when(workdir, baseline / "xla", ready, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert not (workdir / "results.json").exists()
    resumed = _train(workdir, baseline / "xla")
    assert "Resuming from step_" in resumed.stdout, resumed.stdout[-2000:]
    whole, again = _final(baseline / "whole"), _final(workdir)
    assert list(whole) == list(again)
    for path in whole:
        assert whole[path].tobytes() == again[path].tobytes(), path
    # The same files, columns in the same order (a checkpoint's JSON comes back with its keys sorted).
    for name in ("history.json", "history.csv"):
        assert (workdir / name).read_text() == (baseline / "whole" / name).read_text(), name
    assert not [p for p in (workdir / "checkpoints").iterdir() if p.name.startswith((".tmp-", ".trash-"))]


def _holds_lock(workdir, pid) -> bool:
    try:
        return json.loads((pathlib.Path(workdir) / "checkpoints" / "LOCK").read_text()).get("pid") == pid
    except (OSError, ValueError):  # not there yet, or being written
        return False


@pytest.mark.parametrize("when", ["together", "held"])
def test_a_second_run_on_the_same_workdir_is_refused_in_one_line_and_the_first_is_unharmed(baseline, when):
    workdir = baseline / f"concurrent-{when}"
    start = lambda: subprocess.Popen(_command(workdir), cwd=ROOT, env=_env(baseline / "xla"),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runs = [start()]
    if when == "held":  # the second starts while the first holds the lock, paused so that it cannot finish first
        deadline = time.monotonic() + 120
        while not _holds_lock(workdir, runs[0].pid):
            assert runs[0].poll() is None and time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.01)
        runs[0].send_signal(signal.SIGSTOP)
        runs.append(start())
        runs[1].wait(timeout=300)
        runs[0].send_signal(signal.SIGCONT)
    else:
        runs.append(start())
    errors = [run.communicate(timeout=300)[1] for run in runs]
    codes = [run.returncode for run in runs]
    assert sorted(codes) == [0, 1], errors  # started together, either may win; while the first holds it, the first
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert when == "together" or winner == 0
    lines = errors[loser].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"is in use by pid {runs[winner].pid}" in lines[0]
    whole, again = _final(baseline / "whole"), _final(workdir)
    assert all(whole[p].tobytes() == again[p].tobytes() for p in whole)
    checkpoints = workdir / "checkpoints"
    for step in sorted(p.name for p in checkpoints.iterdir() if p.name.startswith("step_")):
        load_tree(checkpoints / step)  # every checkpoint left verifies


def test_sigterm_saves_a_checkpoint_and_exits_within_seconds(baseline):
    workdir = baseline / "sigterm"
    proc, _, err, seconds = _start_and_signal_when(workdir, baseline / "xla", _complete(16), signal.SIGTERM)
    assert proc.returncode == 143, err[-2000:]
    assert seconds < 5
    line = [ln for ln in err.splitlines() if "Stopped by SIGTERM" in ln][-1]
    assert "checkpoint saved to" in line and line.endswith("run the same command again to resume")
    saved = line.split("checkpoint saved to ")[1].split(";")[0]
    assert pathlib.Path(saved, "meta.json").is_file()
    assert (workdir / "checkpoints" / "LOCK").read_text() == ""  # a stopped run gives its lock back
    resumed = _train(workdir, baseline / "xla")
    assert "taking over the lock" not in resumed.stderr
    assert (workdir / "checkpoints" / "LOCK").read_text() == ""  # and so does a finished one
    whole, again = _final(baseline / "whole"), _final(workdir)
    assert all(np.array_equal(whole[p], again[p]) for p in whole)


def test_a_workdir_of_another_config_is_refused_and_left_untouched(baseline):
    workdir = baseline / "other"
    shutil.copytree(baseline / "whole", workdir)
    before = sorted((str(p), p.stat().st_mtime_ns) for p in workdir.rglob("*"))
    proc = subprocess.run(_command(workdir, "--config.optimizer.learning_rate=0.01"), cwd=ROOT, env=_env(baseline / "xla"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2  # a usage error: another run's workdir (docs/errors.md)
    assert "holds checkpoints of a different run: optimizer.learning_rate is 0.001 there and 0.01 here" in proc.stderr
    assert sorted((str(p), p.stat().st_mtime_ns) for p in workdir.rglob("*")) == before
