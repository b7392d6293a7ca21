"""Run N local processes of one multi-process jaxnn run; when one fails, stop them all.

    python -m jaxnn.launch --num_processes 2 -- train.py --config configs/fashion_mnist_mlp.py --workdir runs/x

Each child is `python ARGS...` with JAXNN_COORDINATOR_ADDRESS, JAXNN_NUM_PROCESSES and JAXNN_PROCESS_ID
set (read by `jaxnn.distributed.initialize`); its output lines are prefixed with its index ("[1] ...").
The launcher exits with the first failing child's status (128 + N for signal N), else 0.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

# A child asked to stop gets this long to exit on its own before it is killed.
GRACE_S = 3.0
_POLL_S = 0.05


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"jaxnn.launch: error: {message}\n")


def parse_args(argv):
    """`--num_processes N [--port P] -- SCRIPT ARGS...`; a bad argument is one line and exit status 2."""
    parser = _Parser(prog="python -m jaxnn.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--num_processes", type=int, required=True, help="local processes to start")
    parser.add_argument("--port", type=int, default=None, help="coordinator port on 127.0.0.1 (default: a free one)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the script and its arguments")
    args = parser.parse_args(argv)
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.num_processes < 1:
        parser.error(f"--num_processes must be a positive integer, got {args.num_processes}")
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    if not args.command:
        parser.error("give the script to run after --, e.g. -- train.py --config ...")
    return args


def free_port() -> int:
    """A TCP port that nothing listens on now (the coordinator binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_with(launcher: int):
    """On Linux, a child's set-up that sends it SIGTERM when the launcher dies, even by SIGKILL (prctl's
    PR_SET_PDEATHSIG): it then saves and stops as on any SIGTERM, instead of waiting on its dead peers' collectives
    while holding the run's lock. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None

    def set_up():
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != launcher:  # the launcher died before the prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return set_up


class _Children:
    """The running children, their output copiers and the signals to send them."""

    def __init__(self, command, num_processes: int, port: int):
        self.procs, self._copiers = [], []
        self._lock = threading.Lock()
        for index in range(num_processes):  # every child before any copier thread (preexec_fn and threads)
            env = dict(os.environ, JAXNN_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                       JAXNN_NUM_PROCESSES=str(num_processes), JAXNN_PROCESS_ID=str(index))
            env.setdefault("PYTHONUNBUFFERED", "1")
            # Own process group: a terminal's Ctrl-C reaches the children once, through the launcher.
            self.procs.append(subprocess.Popen([sys.executable, *command], env=env, stdin=subprocess.DEVNULL,
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                               preexec_fn=_stop_with(os.getpid())))
        for index, proc in enumerate(self.procs):
            for source, sink in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr)):
                copier = threading.Thread(target=self._copy, args=(index, source, sink), daemon=True)
                copier.start()
                self._copiers.append(copier)

    def _copy(self, index: int, source, sink) -> None:
        prefix = f"[{index}] ".encode()
        for line in iter(source.readline, b""):
            with self._lock:
                sink.buffer.write(prefix + line + (b"" if line.endswith(b"\n") else b"\n"))
                sink.flush()

    def signal(self, signum: int) -> None:
        """Send `signum` to every child's process group (a child's own children go too)."""
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self) -> None:
        """SIGTERM to all, SIGKILL to those still running after GRACE_S."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs):
            time.sleep(_POLL_S)
        self.signal(signal.SIGKILL)
        for proc in self.procs:
            proc.wait()

    def finish_output(self) -> None:
        for copier in self._copiers:
            copier.join(timeout=1.0)


def exit_status(returncode: int) -> int:
    """A shell's exit status for a child's return code: 128 + N when signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


def _describe_status(returncode: int) -> str:
    if returncode < 0:
        return f"status {exit_status(returncode)} ({signal.Signals(-returncode).name})"
    return f"status {returncode}"


def first_failure(codes: list[int | None]) -> int | None:
    """The index of the failed child to report (None if none failed): one ended by a signal before one that
    exited with an error, since its peers fail on their own when it dies (all seen in the same poll)."""
    failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
    return min(failed, key=lambda i: (codes[i] > 0, i), default=None)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def supervise(children: _Children, pending=()) -> int:
    """Wait for the children; the first to fail stops the others, unless a forwarded signal asked them all to stop.
    `pending`: stop signals that came while the children were starting, forwarded now."""
    forwarded = []

    def forward(signum, frame):
        forwarded.append(signum)
        # A second signal means "now": the children get SIGKILL.
        children.signal(signum if len(forwarded) == 1 else signal.SIGKILL)

    for signum in STOP_SIGNALS:
        signal.signal(signum, forward)
    for signum in list(pending):
        forward(signum, None)
    while True:
        codes = [proc.poll() for proc in children.procs]
        failed = first_failure(codes)
        if failed is not None and not forwarded:
            others = len(codes) - 1
            print(f"jaxnn.launch: process {failed} exited with {_describe_status(codes[failed])}; "
                  f"stopping the other {others} process{'es' if others != 1 else ''}", file=sys.stderr, flush=True)
            children.stop()
            return exit_status(codes[failed])
        if all(code is not None for code in codes):
            return next((exit_status(code) for code in codes if code != 0), 0)
        time.sleep(_POLL_S)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    pending = []  # a stop signal while the children start (their output may already be copied) is kept
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda signum, frame: pending.append(signum))
    children = _Children(args.command, args.num_processes, args.port or free_port())
    try:
        return supervise(children, pending)
    finally:
        children.finish_output()


if __name__ == "__main__":
    sys.exit(main())
