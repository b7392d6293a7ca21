"""One writer per checkpoint directory: a second live process is refused in one line naming the holder; a lock
left by a SIGKILLed run is taken over with a warning; the same process may take it again; release empties it."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

from jaxnn.checkpoint import lock

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _holder(directory, claim=True) -> subprocess.Popen:
    """A process that takes the lock, says so, and sleeps."""
    code = textwrap.dedent(f"""
        import time
        from jaxnn.checkpoint import lock
        lock.acquire({str(directory)!r}, claim={claim!r})
        print("locked", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("claim", [True, False])  # unclaimed: its file still empty, the kernel names it
def test_a_live_holder_refuses_a_second_run_in_one_line(tmp_path, claim):
    holder = _holder(tmp_path, claim)
    try:
        with pytest.raises(lock.CheckpointLockedError) as refused:
            lock.acquire(tmp_path)
        message = str(refused.value)
        assert "\n" not in message
        assert f"is in use by pid {holder.pid} on {os.uname().nodename}" in message and "another workdir" in message
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads((tmp_path / "LOCK").read_text())["pid"] == holder.pid  # the dead holder is still named
    with pytest.warns(RuntimeWarning, match=f"taking over the lock .* left by pid {holder.pid} .* no longer running"):
        lock.acquire(tmp_path)
    try:
        assert json.loads((tmp_path / "LOCK").read_text())["pid"] == os.getpid()
        lock.acquire(tmp_path)  # the same process may take it again
    finally:
        lock.release(tmp_path)
    assert (tmp_path / "LOCK").read_text() == ""  # released: emptied, never deleted


def test_a_lock_naming_another_host_is_not_taken(tmp_path):
    (tmp_path / "LOCK").write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "then"}))
    with pytest.raises(lock.CheckpointLockedError, match="locked by pid 1 on elsewhere .*another host: if that run"):
        lock.acquire(tmp_path)


def test_a_lock_released_untouched_leaves_the_tree_as_it_was(tmp_path):
    directory = tmp_path / "run" / "checkpoints"
    lock.acquire(directory)
    assert (directory / lock.LOCK_FILE).exists()
    lock.release(directory, untouched=True)
    assert list(tmp_path.iterdir()) == []  # the lock file, checkpoints/ and run/ were all made by the lock


def test_an_untouched_release_keeps_what_was_there_before(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    (directory / "step_000000001").mkdir()
    lock.acquire(directory)
    lock.release(directory, untouched=True)
    assert sorted(p.name for p in directory.iterdir()) == ["step_000000001"]
