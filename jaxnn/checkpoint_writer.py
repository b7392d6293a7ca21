"""Checkpoint writes in a child process, so orbax's Python work never holds the training loop's GIL.

One long-lived child saves for every directory the parent checkpoints into. The parent copies the arrays
into a memory region both map (a memfd, reused and grown as needed) and sends each job as one JSON line
(no pickle); the child saves straight from the shared pages. It keeps the normal priority and its
parent's session (a lower priority or a session of its own slowed training: bench/RESULTS.md), has a
process group of its own so that Ctrl-C does not reach it, and dies with its parent (the checkpoint
format makes a save cut short safe). Multi-process runs keep orbax on a thread of each process, where
JAX's distributed runtime is (`ModelCheckpoint(writer=...)`).
"""
from __future__ import annotations

import atexit
import json
import mmap
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

PARENT_POLL_S = 0.05
ALIGN = 64  # each array starts on a cache line of the shared region


class CheckpointWriteError(RuntimeError):
    """The writer process could not save a checkpoint (its error, or the process itself died)."""


class _SharedRegion:
    """A growable memory region the child maps too: one anonymous file (a memfd on Linux) and its mapping."""

    def __init__(self):
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("jaxnn-checkpoint")
        else:  # an unlinked temporary file elsewhere
            with tempfile.TemporaryFile() as f:
                self.fd = os.dup(f.fileno())
        self.map = None

    def write(self, arrays: list[np.ndarray], offsets: list[int], size: int) -> None:
        """Copy `arrays` to their byte offsets, first growing the region to `size` bytes if it is smaller."""
        if self.map is None or size > len(self.map):
            os.ftruncate(self.fd, max(size, mmap.PAGESIZE))
            self.map = mmap.mmap(self.fd, max(size, mmap.PAGESIZE))
        for a, offset in zip(arrays, offsets):
            np.copyto(np.frombuffer(self.map, a.dtype, a.size, offset).reshape(a.shape), a, casting="no")

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
        os.close(self.fd)


def _layout(arrays: list[np.ndarray]) -> tuple[list[int], int]:
    """Each array's byte offset in the shared region (cache-line aligned) and the bytes they span."""
    offsets, end = [], 0
    for a in arrays:
        offsets.append(end)
        end = -(-(end + a.nbytes) // ALIGN) * ALIGN
    return offsets, end


class WriterProcess:
    """The parent's handle on one child process that saves checkpoints; `save` blocks until it is written."""

    def __init__(self):
        self._proc, self._region, self._owner = None, None, None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, JAX_PLATFORMS="cpu")  # never claim the parent's GPU or TPU
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the directory holding jaxnn/
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        serve_parent = "import sys; from jaxnn.checkpoint_writer import serve; serve(*map(int, sys.argv[1:]))"
        fd = self._region.fd
        return subprocess.Popen([sys.executable, "-c", serve_parent, str(os.getpid()), str(fd)], pass_fds=(fd,),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, process_group=0)

    def save(self, manager, step: int, flat: dict[str, np.ndarray], meta: dict | None, metric: float | None) -> None:
        """Save `flat` (path -> host array) as checkpoint `step` of `manager`'s directory, in the child."""
        arrays = [np.asarray(a) for a in flat.values()]
        offsets, size = _layout(arrays)
        header = {"directory": manager.directory, "keep": manager.keep, "best_mode": manager.best_mode,
                  "step": int(step), "meta": meta, "metric": metric, "size": size,
                  "arrays": [[p, list(a.shape), a.dtype.name, o] for p, a, o in zip(flat, arrays, offsets)]}
        line = json.dumps(header, allow_nan=False).encode() + b"\n"  # refused here, before anything is sent
        with self._lock:
            if self._owner != os.getpid():  # a forked copy of this process never shares its parent's child
                self._proc, self._region, self._owner = None, None, os.getpid()
            if self._region is None:
                self._region = _SharedRegion()
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            self._region.write(arrays, offsets, size)  # the child is idle: its last job was answered
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
                reply = proc.stdout.readline()
            except (BrokenPipeError, OSError):
                reply = b""
            if not reply:
                code = proc.wait()
                self._proc = None
                raise CheckpointWriteError(f"the checkpoint writer process exited (code {code}) before saving "
                                           f"step {step} in {manager.directory}")
        answer = json.loads(reply)
        if "error" in answer:
            raise CheckpointWriteError(f"saving step {step} in {manager.directory} failed: {answer['error']}")

    def close(self) -> None:
        """End the child after its current job (it exits when its input closes) and free the shared region."""
        with self._lock:
            proc, self._proc = self._proc, None
            region, self._region = self._region, None
            if self._owner != os.getpid():
                return
        if region is not None:
            region.close()
        if proc is not None and proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_shared = None
_shared_lock = threading.Lock()


def shared_writer() -> WriterProcess:
    """The process-wide writer (started at its first save, ended at exit; a forked process gets its own)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = WriterProcess()
            atexit.register(_shared.close)
        return _shared


def _forget_after_fork() -> None:
    global _shared, _shared_lock
    _shared, _shared_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def serve(parent: int, region_fd: int) -> None:
    """The child's loop: read a job, save it from the shared region, answer; exit when the input ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the replies
    from absl import logging

    import jax.numpy as jnp

    from jaxnn import checkpoint as ckpt

    logging.set_verbosity(logging.WARNING)
    managers, region = {}, None
    while line := sys.stdin.buffer.readline():
        if not line.endswith(b"\n"):  # the parent died while sending
            os._exit(1)
        job = json.loads(line)
        if region is None or len(region) < job["size"]:  # the parent grew it (a mapping still in use stays alive)
            region = mmap.mmap(region_fd, max(job["size"], mmap.PAGESIZE), prot=mmap.PROT_READ)
        flat = {}
        for path, shape, dtype, offset in job["arrays"]:
            dtype = jnp.dtype(dtype)  # knows bfloat16 and the other ml_dtypes
            flat[path] = np.frombuffer(region, dtype, int(np.prod(shape, dtype=np.int64)), offset).reshape(shape)
        key = (job["directory"], job["keep"], job["best_mode"])
        if key not in managers:
            managers[key] = ckpt.CheckpointManager(job["directory"], keep=job["keep"], best_mode=job["best_mode"])
        try:
            managers[key].save(job["step"], flat, job["meta"], job["metric"])
            answer = {"ok": True}
        except Exception as e:  # reported to the parent, which raises it in the training loop
            answer = {"error": f"{type(e).__name__}: {e}"}
        try:
            replies.write(json.dumps(answer) + "\n")
            replies.flush()
        except OSError:  # the parent is gone (killed mid-save); nobody is left to tell
            os._exit(1)
    os._exit(0)  # every job is done; skip an interpreter shutdown that could write to a closed stderr
