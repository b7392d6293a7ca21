"""One writer per checkpoint directory: a `LOCK` file held with `flock` and naming its holder (host, pid, start).

The kernel drops a `flock` when its process dies, so a lock left by a killed run is free to take; its
file still names the dead holder, which is reported as a stale lock taken over. A live holder makes a
second run refuse in one line. The file is not deleted (a deleted lock file lets two runs each lock
an inode of their own): releasing empties it. Only a run that wrote nothing else (it failed before
training) removes it, while still holding it, with the directories that taking it created. A process may take a lock it already holds (two fits in
one program), and holds it until it releases it or exits.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import warnings

from jaxnn.checkpoint.trees import CheckpointError

LOCK_FILE = "LOCK"
_held: dict[str, list] = {}  # directory -> [flock's file descriptor, claimed, paths its taking created], here


class CheckpointLockedError(CheckpointError):
    """Another live run writes checkpoints to this directory."""


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid from its first owner)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(holder: dict) -> bool:
    ticks = _start_ticks(int(holder.get("pid", -1)))
    return ticks is not None and ticks == holder.get("ticks", ticks)


def _read(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        holder = json.loads(raw) if raw.strip() else None
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "another run"
    started = f" (started {holder['started']})" if holder.get("started") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{started}"


def _flock_holder(fd: int) -> dict | None:
    """The process holding a `flock` on `fd`'s file, from the kernel's /proc/locks: a holder that has not
    written itself into the file yet (it took the lock without `claim`) is still named."""
    stat = os.fstat(fd)
    inode = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()  # id: FLOCK ADVISORY WRITE pid major:minor:inode start end
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode:
                    return {"pid": int(fields[4]), "host": socket.gethostname()}
    except (OSError, ValueError):
        pass
    return None


def acquire(directory: str | os.PathLike, claim: bool = True) -> None:
    """Take `directory`'s lock (creating the directory) or raise CheckpointLockedError naming the holder.

    Without `claim` the lock is held but its file is left as it was (so a run refused for another reason
    leaves the directory untouched); a later `acquire` with `claim` writes this process into it.
    """
    directory = os.path.abspath(os.fspath(directory))
    if directory not in _held:
        created = _missing(os.path.join(directory, LOCK_FILE))
        _held[directory] = [_lock(directory), False, created]
    fd, claimed, _ = _held[directory]
    if claim and not claimed:
        _claim(directory, fd)
        _held[directory][1] = True


def _missing(path: str) -> list[str]:
    """`path` and those of its parent directories that do not exist yet, deepest first."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _lock(directory: str) -> int:
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd) or _flock_holder(fd)
        os.close(fd)
        raise CheckpointLockedError(f"{directory} is in use by {_describe(holder)}: wait for that run to end, "
                                    "or use another workdir") from None
    previous = _read(fd)
    if previous is not None and previous.get("host") != socket.gethostname():
        os.close(fd)
        raise CheckpointLockedError(f"{directory} is locked by {_describe(previous)}, another host: if that run "
                                    f"has ended, delete {os.path.join(directory, LOCK_FILE)}")
    if previous is not None and _alive(previous) and int(previous["pid"]) != os.getpid():
        os.close(fd)  # flock does not reach this filesystem's other clients; the holder still runs
        raise CheckpointLockedError(f"{directory} is in use by {_describe(previous)}: wait for that run to end, "
                                    "or use another workdir")
    return fd


def _claim(directory: str, fd: int) -> None:
    previous = _read(fd)
    if previous is not None and int(previous.get("pid", -1)) != os.getpid():
        warnings.warn(f"taking over the lock of {directory} left by {_describe(previous)}, which is no longer "
                      "running", RuntimeWarning, stacklevel=3)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "ticks": _start_ticks(os.getpid()),
          "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    os.fsync(fd)


def release(directory: str | os.PathLike, *, untouched: bool = False) -> None:
    """Give the lock back (its file emptied if this process wrote into it); a no-op if this process does not
    hold it. `untouched`: nothing but the lock was written (the run failed before training), so the lock
    file and the directories that taking it created are removed, leaving the tree as it was."""
    fd, claimed, created = _held.pop(os.path.abspath(os.fspath(directory)), (None, False, []))
    if fd is None:
        return
    if claimed:
        os.ftruncate(fd, 0)
    if untouched:
        for path in created:  # the lock file first, then the directories it needed, deepest first
            try:
                os.unlink(path) if path.endswith(LOCK_FILE) else os.rmdir(path)
            except OSError:
                break  # something else was written there meanwhile: keep it
    os.close(fd)
