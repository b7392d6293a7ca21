"""The checkpoint writer process: the same checkpoint as an in-process save, its errors raised in the parent,
ignores Ctrl-C, and dies with a parent killed by SIGKILL."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import checkpoint as ckpt
from jaxnn.checkpoint_writer import CheckpointWriteError, WriterProcess


def _flat():
    rng = np.random.default_rng(0)
    return ckpt.flatten({"kernel": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32),
                         "bias": jnp.arange(5, dtype=jnp.bfloat16), "step": jnp.int32(7),
                         "key": jax.random.key(3), "view": np.asarray(rng.normal(size=(4, 6)))[:, ::2]})


@pytest.fixture
def writer():
    w = WriterProcess()
    yield w
    w.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its parent's wait counts as gone
        return f.read().split()[2] != "Z"


def test_the_child_writes_what_an_in_process_save_writes(tmp_path, writer):
    flat = _flat()
    manager = ckpt.CheckpointManager(tmp_path / "child", keep=2, best_mode="min")
    for step, metric in [(1, 0.5), (2, 0.9), (3, 0.8), (4, 0.7)]:
        writer.save(manager, step, flat, {"epoch": step, "history": {"loss": [0.5, 0.25]}}, metric)
    ckpt.CheckpointManager(tmp_path / "here", keep=2).save(4, flat, {"epoch": 4, "history": {"loss": [0.5, 0.25]}})
    assert manager.steps() == [1, 3, 4]  # the last two plus the best, pruned by the child's manager
    got, meta = ckpt.load_checkpoint(manager.path(4))
    want, want_meta = ckpt.load_checkpoint(ckpt.CheckpointManager(tmp_path / "here").path(4))
    assert meta["history"] == want_meta["history"] and meta["metric"] == 0.7
    assert list(got) == list(want) == list(flat)
    for path in flat:
        assert got[path].dtype == flat[path].dtype and got[path].shape == flat[path].shape
        np.testing.assert_array_equal(got[path], flat[path])


def test_states_of_other_sizes_share_the_growing_region(tmp_path, writer):
    rng = np.random.default_rng(1)
    small = {"w": rng.normal(size=(2, 3)).astype(np.float32), "empty": np.zeros((0, 4), np.float32)}
    large = {"w": rng.normal(size=(300, 700)).astype(np.float32), "n": np.int64(5)}
    manager = ckpt.CheckpointManager(tmp_path / "c", keep=3)
    for step, flat in [(1, small), (2, large), (3, small)]:
        writer.save(manager, step, flat, {}, None)
    for step, flat in [(1, small), (2, large), (3, small)]:
        got, _ = ckpt.load_checkpoint(manager.path(step))
        assert sorted(got) == sorted(flat)
        for path in flat:
            assert got[path].shape == np.shape(flat[path])
            np.testing.assert_array_equal(got[path], flat[path])


def test_a_failed_save_is_raised_in_the_parent_and_the_writer_goes_on(tmp_path, writer):
    (tmp_path / "blocked").write_text("a file where the checkpoint directory should be")
    with pytest.raises(CheckpointWriteError, match=r"saving step 5 in .*blocked failed: (FileExistsError|NotADir)"):
        writer.save(ckpt.CheckpointManager(tmp_path / "blocked"), 5, _flat(), {}, None)
    good = ckpt.CheckpointManager(tmp_path / "good")
    writer.save(good, 6, _flat(), {}, None)
    assert good.steps() == [6]


def test_metadata_that_is_not_json_is_refused_before_the_child_sees_it(tmp_path, writer):
    with pytest.raises(ValueError, match="Out of range float values"):
        writer.save(ckpt.CheckpointManager(tmp_path / "c"), 1, _flat(), {"loss": float("nan")}, None)
    writer.save(ckpt.CheckpointManager(tmp_path / "c"), 2, _flat(), {"loss": 1.0}, None)  # the pipe is intact
    assert ckpt.CheckpointManager(tmp_path / "c").steps() == [2]


def test_ctrl_c_does_not_reach_the_child(tmp_path, writer):
    manager = ckpt.CheckpointManager(tmp_path / "c")
    writer.save(manager, 1, _flat(), {}, None)
    child = writer._proc.pid
    os.kill(child, signal.SIGINT)
    writer.save(manager, 2, _flat(), {}, None)
    assert writer._proc.pid == child and manager.steps() == [1, 2]


def test_a_child_that_dies_during_a_save_is_an_error_and_the_next_save_starts_another(tmp_path, writer,
                                                                                       monkeypatch):
    start = writer._start
    dying = [sys.executable, "-c", "import sys; sys.stdin.buffer.readline(); sys.exit(3)"]
    monkeypatch.setattr(writer, "_start", lambda: subprocess.Popen(dying, stdin=subprocess.PIPE,
                                                                    stdout=subprocess.PIPE))
    manager = ckpt.CheckpointManager(tmp_path / "c")
    with pytest.raises(CheckpointWriteError, match=r"writer process exited \(code 3\) before saving step 3 in"):
        writer.save(manager, 3, _flat(), {}, None)
    monkeypatch.setattr(writer, "_start", start)
    writer.save(manager, 4, _flat(), {}, None)
    assert manager.steps() == [4]


def test_the_child_dies_with_a_parent_killed_by_sigkill(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from jaxnn import checkpoint as ckpt
        from jaxnn.checkpoint_writer import WriterProcess
        w = WriterProcess()
        w.save(ckpt.CheckpointManager({str(tmp_path / "c")!r}), 1, {{"a": np.ones(3, np.float32)}}, {{}}, None)
        print(w._proc.pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
    assert ckpt.CheckpointManager(tmp_path / "c").steps() == [1]
