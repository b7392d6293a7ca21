"""The local multi-process launcher (python -m jaxnn.launch): start-up, prefixed output, stopping on failure."""
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import time

import pytest

from jaxnn import launch

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_launcher(tmp_path, script: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m jaxnn.launch ARGS -- script.py` with the worktree's jaxnn importable by the children."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    return subprocess.run([sys.executable, "-m", "jaxnn.launch", *args, "--", str(path)], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=timeout)


SUM_SCRIPT = """
    import numpy as np
    from jaxnn import distributed
    assert distributed.initialize(initialization_timeout_s=60)
    import jax
    from jax.experimental import multihost_utils
    total = multihost_utils.process_allgather(np.array(jax.process_index() + 1)).sum()
    print(f"process {jax.process_index()} of {jax.process_count()}: sum {total}")
"""


def test_two_processes_join_and_sum_across_processes(tmp_path):
    proc = run_launcher(tmp_path, SUM_SCRIPT, "--num_processes", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "[0] process 0 of 2: sum 3" in lines and "[1] process 1 of 2: sum 3" in lines
    assert all(line.startswith(("[0] ", "[1] ")) for line in lines + proc.stderr.splitlines())


KILL_SCRIPT = """
    import os, signal, time
    if os.environ["JAXNN_PROCESS_ID"] == "1":
        print(time.time(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
"""


def test_a_killed_process_stops_the_others_within_five_seconds(tmp_path):
    proc = run_launcher(tmp_path, KILL_SCRIPT, "--num_processes", "3", timeout=30)
    ended_at = time.time()
    died_at = float(proc.stdout.split("[1] ")[1].split()[0])
    assert proc.returncode == 137 and ended_at - died_at < 5
    assert proc.stderr == "jaxnn.launch: process 1 exited with status 137 (SIGKILL); stopping the other 2 processes\n"


def test_a_stuck_process_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    script = """
        import os, signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.environ["JAXNN_PROCESS_ID"] == "0":
            sys.exit(3)
        time.sleep(60)
    """
    start = time.monotonic()
    proc = run_launcher(tmp_path, script, "--num_processes", "2", timeout=30)
    assert proc.returncode == 3 and time.monotonic() - start < launch.GRACE_S + 5
    assert proc.stderr == "jaxnn.launch: process 0 exited with status 3; stopping the other 1 process\n"


WRONG_COUNT_SCRIPT = """
    import os
    os.environ["JAXNN_NUM_PROCESSES"] = "3"  # as if started with --num_processes 3 while only 2 run
    from jaxnn import distributed
    distributed.initialize(initialization_timeout_s=3)
    print("joined")
"""


def test_a_wrong_process_count_fails_at_start_up_with_one_line(tmp_path):
    start = time.monotonic()
    proc = run_launcher(tmp_path, WRONG_COUNT_SCRIPT, "--num_processes", "2", timeout=60)
    assert proc.returncode == 1 and time.monotonic() - start < 3 + 10
    assert "joined" not in proc.stdout
    ours = [line for line in proc.stderr.splitlines() if "jaxnn" in line]
    assert re.fullmatch(r"\[[01]\] jaxnn: process [01] of 3: the run at 127\.0\.0\.1:\d+ was not complete within 3 s; "
                        r"check the process count on every process and the coordinator address", ours[0]), proc.stderr
    # The launcher's own line: after the first failure, but the other child's timeout may print after it.
    launcher = [line for line in ours if line.startswith("jaxnn.launch")]
    assert len(launcher) == 1 and re.fullmatch(
        r"jaxnn.launch: process [01] exited with status 1; stopping the other 1 process", launcher[0]), proc.stderr


def start_waiting_children(tmp_path, on_sigterm: str) -> subprocess.Popen:
    """The launcher running 2 children that print "ready", then sleep; SIGTERM runs `on_sigterm` in them."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import os, pathlib, signal, sys, time
        def stop(signum, frame):
        {}
            sys.exit(143)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(60)
    """).format(textwrap.indent(textwrap.dedent(on_sigterm).strip(), "    ")))
    proc = subprocess.Popen([sys.executable, "-m", "jaxnn.launch", "--num_processes", "2", "--", str(script)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert sorted(proc.stdout.readline() for _ in range(2)) == ["[0] ready\n", "[1] ready\n"]
    return proc


def test_sigterm_is_forwarded_and_every_child_may_finish(tmp_path):
    proc = start_waiting_children(tmp_path, """
        time.sleep(0.5 * int(os.environ["JAXNN_PROCESS_ID"]))  # saving: process 1 takes longer
        print("saved", flush=True)
    """)
    proc.terminate()
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143 and sorted(stdout.splitlines()) == ["[0] saved", "[1] saved"] and stderr == ""


def test_a_killed_launcher_stops_its_children(tmp_path):
    proc = start_waiting_children(tmp_path, f"""
        pathlib.Path({str(tmp_path)!r}, "stopped-" + os.environ["JAXNN_PROCESS_ID"]).write_text("")
    """)
    proc.kill()  # SIGKILL: the launcher forwards nothing
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while len(list(tmp_path.glob("stopped-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(p.name for p in tmp_path.glob("stopped-*")) == ["stopped-0", "stopped-1"]


@pytest.mark.parametrize("args, message", [
    (["--num_processes", "0", "--", "x.py"], "--num_processes must be a positive integer, got 0"),
    (["--num_processes", "two", "--", "x.py"], "argument --num_processes: invalid int value: 'two'"),
    (["--", "x.py"], "the following arguments are required: --num_processes"),
    (["--num_processes", "2", "--port", "70000", "--", "x.py"], "--port must be in 1..65535, got 70000"),
    (["--num_processes", "2"], "give the script to run after --, e.g. -- train.py --config ..."),
])
def test_bad_arguments_are_one_line_and_status_2(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch.parse_args(args)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"jaxnn.launch: error: {message}\n"


def test_parse_args_keeps_the_script_arguments():
    args = launch.parse_args(["--num_processes", "2", "--port", "1234", "--", "train.py", "--config", "c.py"])
    assert (args.num_processes, args.port, args.command) == (2, 1234, ["train.py", "--config", "c.py"])
    assert launch.exit_status(-9) == 137 and launch.exit_status(3) == 3


def test_the_failure_reported_is_a_killed_process_before_the_peers_that_failed_because_of_it():
    assert launch.first_failure([None, 0, None]) is None
    assert launch.first_failure([1, -9, None]) == 1  # seen in one poll: the SIGKILLed one is the cause
    assert launch.first_failure([3, 1, None]) == 0 and launch.first_failure([0, -15, -9]) == 1
