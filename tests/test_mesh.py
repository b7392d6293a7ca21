"""The Trainer on a mesh: the same numbers on 1, 2, 4 and 8 devices, FSDP state really sharded, several processes.

Each check runs a script in a subprocess with N simulated CPU devices (this process's device count is fixed
once JAX has started), or N processes of one run on localhost through `jaxnn.launch`.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from test_distributed import ROOT, run_python

MODEL = """
    import json, sys, jax, numpy as np
    from jax.experimental import multihost_utils
    from jaxnn import Callback, Dense, Flatten, Sequential, Trainer, distributed, optimizers

    class Losses(Callback):
        def __init__(self):
            self.values = []

        def on_log(self, run, logs):
            self.values.append(logs["loss"])

    def examples(steps):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(steps * 64 + 37, 8, 8)).astype(np.float32)  # the ragged last 37 are dropped
        return x, rng.integers(0, 10, size=len(x))

    def train(mesh, optimizer, x, y):
        trainer = Trainer(Sequential([Flatten(), Dense(64, "relu"), Dense(10, "softmax")]), optimizer=optimizer,
                          mesh=mesh, min_shard_bytes=512)
        losses = Losses()
        state, _ = trainer.fit(trainer.init(0, (8, 8)), x, y, epochs=1, batch_size=64, callbacks=[losses],
                               verbose=0, log_every_steps=1, steps_per_dispatch=1)
        return trainer, state, losses.values
"""

def launch_two(script: str) -> subprocess.CompletedProcess:
    """`script` run as 2 processes of one run, 1 CPU device each, through jaxnn.launch (output lines "[i] ...")."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "jaxnn.launch", "--num_processes", "2", "--", "-c",
                           textwrap.dedent(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


LAYOUTS_SCRIPT = MODEL + """
    x, y = examples(int(sys.argv[1]))
    runs = {}
    for devices, layout in [(1, "data"), *((n, layout) for n in (2, 4, 8) for layout in ("data", "fsdp"))]:
        mesh = distributed.make_mesh({layout: devices})  # one process may use the first n of its 8 devices
        trainer, state, losses = train(mesh, optimizers.get("sgd", learning_rate=0.1, momentum=0.9), x, y)
        leaves = [[jax.tree_util.keystr(path, simple=True, separator="/"), int(a.size * a.dtype.itemsize),
                   int(a.addressable_shards[0].data.size * a.dtype.itemsize), distributed.describe(a.sharding),
                   a.sharding == s]
                  for (path, a), s in zip(jax.tree_util.tree_leaves_with_path(state),
                                          jax.tree.leaves(trainer.state_shardings(state)))]
        runs[f"{layout} x {devices}"] = dict(
            losses=losses, leaves=leaves, evaluate=trainer.evaluate(state, x[:203], y[:203], batch_size=64),
            evaluate_many=trainer.evaluate(state, x, y, batch_size=16),  # 403 batches: dispatch must stay bounded
            predict=trainer.predict(state, x[:203], batch_size=64).tolist())
    print(json.dumps(runs))
"""


@pytest.mark.slow
def test_sgd_on_2_4_8_devices_data_parallel_and_fsdp_matches_one_device():
    steps = 100
    proc = run_python(LAYOUTS_SCRIPT, 8, steps, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout)
    reference = runs.pop("data x 1")
    assert len(reference["losses"]) == steps and reference["losses"][-1] < reference["losses"][0]
    assert reference["evaluate"]["accuracy"] > 0.1
    for name, run in runs.items():
        gap = max(abs(a - b) for a, b in zip(run["losses"], reference["losses"], strict=True))
        assert gap <= 1e-6, (name, gap)
        for key, value in reference["evaluate"].items():  # 203 examples in padded batches: each counted once
            assert run["evaluate"][key] == pytest.approx(value, abs=1e-6), name
            assert run["evaluate_many"][key] == pytest.approx(reference["evaluate_many"][key], abs=1e-6), name
        assert max(abs(a - b) for ra, rb in zip(run["predict"], reference["predict"]) for a, b in zip(ra, rb)) < 1e-6
        layout, devices = name.split(" x ")
        devices = int(devices)
        params = {path: row for path, *row in run["leaves"] if path.startswith("params/")}
        for path, (nbytes, shard_nbytes, text, as_planned) in ((p, r) for p, *r in run["leaves"]):
            assert as_planned, (name, path)
            if layout == "fsdp" and nbytes >= 512:  # every large leaf split in N: kernels and their momenta
                assert shard_nbytes * devices == nbytes and text.startswith("fsdp on axis"), (name, path, text)
            else:
                assert (shard_nbytes, text) == (nbytes, "replicated"), (name, path)
        if layout == "fsdp":
            per_device = sum(row[1] for row in params.values()) / sum(row[0] for row in params.values())
            assert 1 / devices <= per_device < 1 / devices + 0.02, name  # the small biases stay whole


PROCESSES_SCRIPT = MODEL + """
    distributed.initialize(initialization_timeout_s=60)
    x, y = examples(30)
    runs = {}
    for layout in ("data", "fsdp"):
        trainer, state, losses = train(distributed.make_mesh({layout: -1}), optimizers.get("adam", learning_rate=1e-3),
                                      x, y)
        params = multihost_utils.process_allgather(state.params, tiled=True)
        runs[layout] = dict(losses=losses, params=[np.asarray(a).tolist() for a in jax.tree.leaves(params)],
                            evaluate=trainer.evaluate(state, x[:203], y[:203], batch_size=64))
    if jax.process_index() == 0:
        print(json.dumps(runs))
"""


@pytest.mark.slow
def test_adam_on_two_processes_is_bit_identical_to_one_process_with_two_devices():
    one = run_python(PROCESSES_SCRIPT, 2, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch_two(PROCESSES_SCRIPT)
    assert two.returncode == 0, two.stderr[-3000:]
    printed = [line[len("[0] "):] for line in two.stdout.splitlines() if line.startswith("[0] {")]
    assert len(printed) == 1, two.stdout[-3000:]
    single, multi = json.loads(one.stdout), json.loads(printed[0])
    for layout in ("data", "fsdp"):
        assert len(single[layout]["losses"]) == 30
        assert multi[layout] == single[layout], layout  # losses, every parameter and the evaluation, bit for bit


SIGTERM_SCRIPT = MODEL + """
    import os, signal
    from jaxnn.training import TrainingInterrupted

    class TermAtStep7OnProcess1(Callback):
        def on_step_end(self, run, step):
            if jax.process_index() == 1 and run.step == 7:
                os.kill(os.getpid(), signal.SIGTERM)

    distributed.initialize(initialization_timeout_s=60)
    x, y = examples(40)
    trainer = Trainer(Sequential([Flatten(), Dense(10, "softmax")]), mesh=distributed.make_mesh(dict(data=-1)))
    try:
        trainer.fit(trainer.init(0, (8, 8)), x, y, batch_size=64, callbacks=[TermAtStep7OnProcess1()], verbose=0,
                    log_every_steps=5, watchdog_s=60, steps_per_dispatch=1)
    except TrainingInterrupted as e:
        print(f"stopped at step {int(e.state.step)}: {e}")
"""


def test_sigterm_on_one_process_stops_every_process_at_the_same_step():
    proc = launch_two(SIGTERM_SCRIPT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stopped = sorted(line for line in proc.stdout.splitlines() if "stopped at" in line)
    # process 1 got SIGTERM after step 7; both stop at the next log step, where the processes agree
    assert [line[:24] for line in stopped] == ["[0] stopped at step 10: ", "[1] stopped at step 10: "], proc.stdout
    assert "Stopped by a stop signal on another process at step 10 (epoch 1, step 10 of 40)" in stopped[0]
    assert "Stopped by SIGTERM at step 10 (epoch 1, step 10 of 40)" in stopped[1]


STOPPED_PEER_SCRIPT = MODEL + """
    import os, signal, time

    class StopAtStep7OnProcess1(Callback):
        def on_step_end(self, run, step):
            if jax.process_index() == 1 and run.step == 7:
                print(f"stopping {time.time()}", flush=True)
                os.kill(os.getpid(), signal.SIGSTOP)

    distributed.initialize(initialization_timeout_s=60)
    x, y = examples(40)
    trainer = Trainer(Sequential([Flatten(), Dense(10, "softmax")]), mesh=distributed.make_mesh(dict(data=-1)))
    trainer.fit(trainer.init(0, (8, 8)), x, y, batch_size=64, callbacks=[StopAtStep7OnProcess1()], verbose=0,
                watchdog_s=10)
"""


SIGTERM_BEFORE_TRAINING_SCRIPT = """
    import os, signal, sys
    from jaxnn import cli, distributed
    try:
        with cli.stop_signals_raise():  # as train.py: the handlers first, then the run is joined
            distributed.initialize(initialization_timeout_s=60)
            os.kill(os.getpid(), signal.SIGTERM)  # as if while loading data or compiling
            for _ in range(100):
                __import__("time").sleep(0.05)
        print("not stopped")
    except cli.Stopped as e:
        print(f"stopped by {e}")
"""


def test_a_sigterm_after_joining_a_run_still_stops_the_process():
    proc = launch_two(SIGTERM_BEFORE_TRAINING_SCRIPT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(line for line in proc.stdout.splitlines() if "stopped" in line) == [
        "[0] stopped by SIGTERM", "[1] stopped by SIGTERM"], proc.stdout + proc.stderr[-2000:]


def test_a_stopped_peer_ends_the_run_within_the_watchdog_time():
    proc = launch_two(STOPPED_PEER_SCRIPT)
    assert proc.returncode == 1, proc.stderr[-3000:]
    ours = [line for line in proc.stderr.splitlines() if line.startswith("[0] jaxnn:")]
    assert len(ours) == 1, proc.stderr[-3000:]
    assert ours[0].startswith("[0] jaxnn: process 0 of 2: no step finished within 10 s after step ")
    assert ours[0].endswith("; a peer stopped making progress")
    assert "jaxnn.launch: process 0 exited with status 1; stopping the other 1 process" in proc.stderr
