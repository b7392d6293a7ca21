"""Small file helpers: files and directories that readers never see half written, and writing off the training thread."""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
from typing import Callable


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write a file so that readers see the old content or the new, never half of it."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class Background:
    """One worker thread running jobs in order, at most one pending, so that slow I/O (orbax,
    matplotlib) overlaps the training steps; `wait` re-raises a job's error in the caller."""

    def __init__(self):
        self._executor, self._pending = None, None

    def submit(self, fn, *args) -> None:
        """Run `fn(*args)` on the worker once the pending job (if any) is done."""
        self.wait()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxnn-io")
        self._pending = self._executor.submit(fn, *args)

    def wait(self) -> None:
        """Block until the pending job is done; raise its error, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the pending job, then stop the worker (a later `submit` starts another)."""
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown()
                self._executor = None


def publish_dir(path: str | os.PathLike, write: Callable[[str], None],
                check: Callable[[], None] | None = None) -> str:
    """Build a directory with `write(staging)` beside `path`, then rename it into place.

    Readers see the old directory or the whole new one, never a part. An
    existing `path` is moved aside and removed once the new one is in place,
    or put back if anything fails; `check()` runs just before the swap (the
    target may have changed while `write` ran). The new directory is readable
    by all (a serving process may run as another user).
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".tmp-{os.path.basename(path)}-")
    old = staging + ".old"
    try:
        os.chmod(staging, 0o755)
        write(staging)
        if check is not None:
            check()
        if os.path.lexists(path):
            os.replace(path, old)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if os.path.lexists(old) and not os.path.lexists(path):
            os.replace(old, path)
        raise
    if os.path.isdir(old) and not os.path.islink(old):
        shutil.rmtree(old)
    elif os.path.lexists(old):
        os.unlink(old)
    return path
