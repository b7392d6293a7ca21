"""The kill suite: 20 SIGKILLs of a checkpointing fit, at chosen points (before a meta.json, mid-prune, inside the
final save, inside orbax's write) and at random points, chained in four workdirs; every resumed run ends with
final parameters, optimizer and step state, and History bit-identical to an uninterrupted run."""
import glob
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxnn import checkpoint as ckpt

ROOT = pathlib.Path(__file__).resolve().parents[2]
KILL_RUN = pathlib.Path(__file__).with_name("kill_run.py")
CHAINS = {  # each workdir: its kill points in order, then one run to the end
    "chosen": ["meta:1", "meta:2", "meta:3", "prune:1", "prune:2"],
    "final": ["meta:4", "prune:1", "final", "final"],
    "orbax": ["tmp:1", "tmp:3", "tmp:6", "tmp:2"],
    "random": ["random"] * 7,
}

pytestmark = pytest.mark.slow


def _start(workdir, point="") -> subprocess.Popen:
    args = [point] if point and point.split(":")[0] in ("meta", "prune", "final") else []
    return subprocess.Popen([sys.executable, str(KILL_RUN), str(workdir), *args], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _kill_when(proc, ready) -> None:
    deadline = time.monotonic() + 120
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.kill()


def _killed_run(workdir, point: str, rng: random.Random) -> int:
    proc = _start(workdir, point)
    kind, _, count = point.partition(":")
    checkpoints = workdir / "checkpoints"
    if kind == "tmp":  # inside orbax's write: its temporary directory of the count-th save is there
        seen = set()

        def writing():
            seen.update(glob.glob(f"{checkpoints}/step_*/*orbax-checkpoint-tmp*"))
            return len(seen) >= int(count)
        _kill_when(proc, writing)
    elif kind == "random":  # once training has begun, after a random fraction of a second
        _kill_when(proc, lambda: bool(glob.glob(f"{checkpoints}/step_*")))
        time.sleep(rng.uniform(0, 0.4))
        proc.kill()
    proc.wait(timeout=120)
    return proc.returncode


def _outcome(workdir) -> tuple[dict, dict]:
    final = ckpt.load_tree(workdir / "final")
    return {p: a.tobytes() for p, a in final.items()}, json.loads((workdir / "history.json").read_text())


def test_twenty_sigkills_then_resume_end_bit_identical(tmp_path):
    whole = _start(tmp_path / "whole")
    assert whole.wait(timeout=300) == 0, whole.stderr.read()[-3000:]
    want = _outcome(tmp_path / "whole")
    rng, kills = random.Random(0), 0
    for name, points in CHAINS.items():
        workdir = tmp_path / name
        for point in points:
            code = _killed_run(workdir, point, rng)
            assert code == -signal.SIGKILL, f"{name}: {point} ended with {code}, not a kill"
            kills += 1
        resumed = _start(workdir)
        assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-3000:]
        got = _outcome(workdir)
        assert got[0] == want[0], f"{name}: final state differs"
        assert got[1] == want[1], f"{name}: History differs"
        assert not [p for p in (workdir / "checkpoints").iterdir() if p.name.startswith((".tmp-", ".trash-"))]
        for step in ckpt.CheckpointManager(workdir / "checkpoints").steps():  # every checkpoint left verifies
            ckpt.load_tree(workdir / "checkpoints" / f"step_{step:09d}")
    assert kills == 20
    np.testing.assert_equal(kills, sum(map(len, CHAINS.values())))
