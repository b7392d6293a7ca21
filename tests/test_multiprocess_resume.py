"""A 2-process `train.py` run through `jaxnn.launch`: SIGKILL of one process after the first checkpoint ends the
other within seconds with one line; the same command again resumes from that checkpoint and ends bit-identical
to an uninterrupted 2-process run (parameters, optimizer and step state, History)."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from jaxnn.checkpoint import load_tree

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--config.dataset.train_split=train[:1024]", "--config.dataset.test_split=test[:256]",
        "--config.train.epochs=2", "--config.model.hidden_units=(32,)", "--config.train.batch_size=32",
        "--config.checkpoint.every_steps=8", "--config.checkpoint.keep=2", "--config.mesh.data=-1"]

pytestmark = pytest.mark.slow


def _launch(workdir, cache) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAXNN_COMPILATION_CACHE=str(cache))
    return subprocess.Popen([sys.executable, "-m", "jaxnn.launch", "--num_processes", "2", "--", "train.py",
                             "--config=configs/fashion_mnist_mlp.py", f"--workdir={workdir}", *TINY], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc) -> tuple[str, str]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def _child(launcher: subprocess.Popen, process_id: int) -> int:
    """The pid of the launcher's child with JAXNN_PROCESS_ID=`process_id`."""
    children = pathlib.Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    return next(int(pid) for pid in children
                if f"JAXNN_PROCESS_ID={process_id}\0".encode() in pathlib.Path(f"/proc/{pid}/environ").read_bytes())


def test_sigkill_of_one_process_stops_the_other_in_one_line_and_a_restart_resumes_bit_identical(tmp_path):
    cache = tmp_path / "xla"
    _finish(_launch(tmp_path / "whole", cache))
    workdir = tmp_path / "killed"
    launcher = _launch(workdir, cache)
    deadline = time.monotonic() + 300
    while not list((workdir / "checkpoints").glob("step_*/meta.json")):
        assert launcher.poll() is None, launcher.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint was completed"
        time.sleep(0.005)
    os.kill(_child(launcher, 1), signal.SIGKILL)
    killed = time.monotonic()
    _, err = launcher.communicate(timeout=60)
    assert time.monotonic() - killed < 5  # the figure; the launcher kills a survivor after its grace
    assert launcher.returncode == 128 + signal.SIGKILL and "Traceback" not in err, err
    lines = err.splitlines()
    # The launcher's own line and the survivor's race each other to stderr: either may come last.
    assert [line for line in lines if not line.startswith("[")] == [
        "jaxnn.launch: process 1 exited with status 137 (SIGKILL); stopping the other 1 process"]
    survivor = [line for line in lines if line.startswith("[0] ")]
    assert len(survivor) == 1 and survivor[0].startswith(("[0] jaxnn: process 0 of 2: step ", "[0] error: ")), err
    assert not (workdir / "results.json").exists()

    out, _ = _finish(_launch(workdir, cache))
    assert "[0] Resuming from step_" in out, out[-2000:]
    whole, again = (load_tree(d / "checkpoints" / "final") for d in (tmp_path / "whole", workdir))
    assert list(whole) == list(again)
    for path in whole:
        assert whole[path].tobytes() == again[path].tobytes(), path
    assert json.loads((workdir / "history.json").read_text()) == json.loads(
        (tmp_path / "whole" / "history.json").read_text())
    checkpoints = workdir / "checkpoints"
    assert not [p for p in checkpoints.iterdir() if p.name.startswith((".tmp-", ".trash-"))]
    for step in (p for p in checkpoints.iterdir() if p.name.startswith("step_")):
        load_tree(step)  # every checkpoint left verifies
