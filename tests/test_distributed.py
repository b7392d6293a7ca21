"""Mesh, sharding rules, start-up checks and bounded failure (jaxnn.distributed).

Checks that need several devices run a script in a subprocess with N simulated CPU devices: this
process's device count is fixed once JAX has started.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AbstractMesh, AxisType, NamedSharding, PartitionSpec as P

from jaxnn import distributed

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_python(code: str, devices: int = 1, *args, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python with `devices` simulated CPU devices; the worktree's jaxnn is imported."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def abstract_mesh(data: int, fsdp: int) -> AbstractMesh:
    return AbstractMesh((data, fsdp), distributed.AXES, axis_types=(AxisType.Auto,) * 2)


def leaf(*shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype)


# --- the mesh ---------------------------------------------------------------------------------------

def test_default_mesh_is_one_device_with_auto_axes():
    mesh = distributed.make_mesh(distributed.MESH_DEFAULTS)
    assert dict(mesh.shape) == {"data": 1, "fsdp": 1}
    assert mesh.axis_types == (AxisType.Auto, AxisType.Auto)


def test_mesh_specs_on_eight_devices():
    code = """
        import json, ml_collections
        from jaxnn import distributed
        specs = [dict(data=-1), dict(fsdp=-1), dict(data=2, fsdp=-1), dict(data=2), dict(data=4, fsdp=2),
                 ml_collections.ConfigDict(dict(data=-1, fsdp=4))]
        print(json.dumps([[dict(m.shape), m.devices.size] for m in map(distributed.make_mesh, specs)]))
    """
    proc = run_python(code, 8)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [[{"data": 8, "fsdp": 1}, 8], [{"data": 1, "fsdp": 8}, 8],
                                       [{"data": 2, "fsdp": 4}, 8], [{"data": 2, "fsdp": 1}, 2],
                                       [{"data": 4, "fsdp": 2}, 8], [{"data": 2, "fsdp": 4}, 8]]


@pytest.mark.parametrize("spec, message", [
    ([("data", 2)], "mesh must be a dict of axis sizes, e.g. dict(data=-1, fsdp=1), got [('data', 2)]"),
    (dict(data=0), "mesh.data must be a positive integer or -1 (all the devices left), got 0"),
    (dict(fsdp="2"), "mesh.fsdp must be a positive integer or -1"),
    (dict(data=True), "mesh.data must be a positive integer or -1"),
    (dict(model=2), "mesh.model is not a mesh axis: the axes are data, fsdp"),
    (dict(data=-1, fsdp=-1), "mesh.data=-1 x mesh.fsdp=-1: at most one mesh axis can be -1"),
    (dict(data=3, fsdp=-1), "mesh.data=3 x mesh.fsdp=-1 needs a multiple of 3 devices; 8 are available: "
                            "use sizes whose product divides 8"),
    (dict(data=4, fsdp=4), "mesh.data=4 x mesh.fsdp=4 needs 16 devices; 8 are available: "
                           "use at most 8 devices in all, or -1"),
])
def test_bad_mesh_spec_is_one_line(spec, message):
    eight = jax.devices() * 8  # only counted: every spec here fails before a device is used
    with pytest.raises(ValueError) as err:
        distributed.make_mesh(spec, eight)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_multi_process_mesh_must_use_every_device(monkeypatch):
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ValueError, match="mesh.data=2 x mesh.fsdp=1 needs 2 devices, but every one of the 4 devices "
                                         "of a 2-process run must take part"):
        distributed.make_mesh(dict(data=2), jax.devices() * 4)


def test_global_batch_must_split_over_data_and_fsdp():
    mesh = abstract_mesh(2, 4)
    distributed.check_global_batch(mesh, 96)
    with pytest.raises(ValueError, match=r"^train.batch_size must be divisible by the data-parallel size 8 "
                                         r"\(mesh.data=2 x mesh.fsdp=4\), got 100$"):
        distributed.check_global_batch(mesh, 100)
    with pytest.raises(ValueError, match="eval.batch_size must be an integer >= 1, got 0"):
        distributed.check_global_batch(mesh, 0, field="eval.batch_size")


def test_batch_and_replicated_shardings():
    mesh = distributed.make_mesh(distributed.MESH_DEFAULTS)
    assert distributed.batch_sharding(mesh).spec == P(("data", "fsdp"))
    assert distributed.replicated(mesh).spec == P()


# --- where each leaf lives ----------------------------------------------------------------------------

def specs(tree, mesh, **kwargs):
    return jax.tree.map(lambda s: s.spec, distributed.state_shardings(tree, mesh, **kwargs))


def test_fsdp_rule_largest_divisible_axis_last_on_ties_threshold_inclusive():
    tree = {"wide": leaf(784, 64), "tall": leaf(64, 10), "square": leaf(16, 16), "odd": leaf(10, 70),
            "bias": leaf(128), "exact": leaf(256, dtype=jnp.float16), "small": leaf(127, dtype=jnp.float32),
            "key": jax.eval_shape(lambda: jax.random.key(0)), "step": leaf(dtype=jnp.int32)}
    got = specs(tree, abstract_mesh(2, 4), min_shard_bytes=512)
    assert got == {"wide": P("fsdp"), "tall": P("fsdp"), "square": P(None, "fsdp"), "odd": P(), "bias": P("fsdp"),
                   "exact": P("fsdp"), "small": P(), "key": P(), "step": P()}


def test_fsdp_of_one_and_default_threshold_replicate():
    tree = {"kernel": leaf(1024, 1024), "big": leaf(1024, 1025)}
    assert specs(tree, abstract_mesh(8, 1), min_shard_bytes=0) == {"kernel": P(), "big": P()}
    # The default threshold is 4 MiB: a 1024 x 1024 float32 kernel is exactly that.
    assert specs(tree, abstract_mesh(1, 4)) == {"kernel": P(None, "fsdp"), "big": P("fsdp")}
    assert specs({"k": leaf(1024, 1023)}, abstract_mesh(1, 4)) == {"k": P()}


def test_regex_rules_first_match_wins_and_reach_optimizer_moments():
    params = {"dense": {"kernel": leaf(64, 32), "bias": leaf(32)}, "dense_1": {"kernel": leaf(32, 8), "bias": leaf(8)}}
    tree = {"params": params, "opt_state": ({"mu": params},)}
    rules = {"dense_1/kernel": (None, "fsdp"), "dense_1": ("data",), r"dense/kernel$": (("data", "fsdp"),)}
    got = specs(tree, abstract_mesh(2, 4), rules=rules, min_shard_bytes=2**30)
    expected = {"dense": {"kernel": P(("data", "fsdp")), "bias": P()},
                "dense_1": {"kernel": P(None, "fsdp"), "bias": P("data")}}
    assert got == {"params": expected, "opt_state": ({"mu": expected},)}
    # A list of pairs keeps its order: here the broader rule comes first and wins.
    got = specs(params, abstract_mesh(2, 4), rules=[("dense_1", ("data",)), ("dense_1/kernel", (None, "fsdp"))])
    assert got["dense_1"] == {"kernel": P("data"), "bias": P("data")}


@pytest.mark.parametrize("rule, message", [
    ((None, None, "fsdp"), r"sharding rule 'kernel' gives \(None, None, 'fsdp'\) for dense/kernel of shape \(12, 6\): "
                           r"3 axes for a rank-2 leaf"),
    ((None, "fsdp"), r"for dense/kernel of shape \(12, 6\): axis 1 of size 6 does not split 4 ways"),
    ((("data", "fsdp"),), r"axis 0 of size 12 does not split 8 ways"),
    (("model",), r"'model' is not a mesh axis \(data, fsdp\)"),
    (("fsdp", "fsdp"), r"a mesh axis can split only one axis of a leaf"),
])
def test_rule_that_does_not_fit_names_the_path(rule, message):
    with pytest.raises(ValueError, match=message):
        distributed.state_shardings({"dense": {"kernel": leaf(12, 6)}}, abstract_mesh(2, 4), rules={"kernel": rule})


def test_bad_rule_regex_and_threshold():
    with pytest.raises(ValueError, match=r"sharding rule 'dense\[' must be a regular expression"):
        distributed.state_shardings({"w": leaf(4)}, abstract_mesh(1, 4), rules={"dense[": ()})
    with pytest.raises(ValueError, match="min_shard_bytes must be an integer >= 0, got -1"):
        distributed.state_shardings({"w": leaf(4)}, abstract_mesh(1, 4), min_shard_bytes=-1)


@pytest.mark.parametrize("spec, mesh, text", [
    (P(None, "fsdp"), abstract_mesh(2, 4), "fsdp on axis 1"),
    (P(("data", "fsdp")), abstract_mesh(2, 4), "data+fsdp on axis 0"),
    (P(("data", "fsdp")), abstract_mesh(2, 1), "data on axis 0"),
    (P(None, "fsdp"), abstract_mesh(8, 1), "replicated"),
    (P(), abstract_mesh(2, 4), "replicated"),
])
def test_describe(spec, mesh, text):
    assert distributed.describe(NamedSharding(mesh, spec)) == text


STATE_SCRIPT = """
    import json, jax, jax.numpy as jnp, optax
    from jaxnn import Dense, Flatten, Sequential, TrainState, distributed
    model, tx = Sequential([Flatten(), Dense(64), Dense(10)]), optax.adam(1e-3)

    def init():
        _, params, model_state = model.init(jax.random.key(1), (None, 28, 28))
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                          opt_state=tx.init(params), key=jax.random.key(0))

    mesh = distributed.make_mesh(dict(fsdp=-1))
    shardings = distributed.state_shardings(jax.eval_shape(init), mesh, min_shard_bytes=1024)
    state = jax.jit(init, out_shardings=shardings)()
    rows = [[jax.tree_util.keystr(path, simple=True, separator="/"), int(a.size * a.dtype.itemsize),
             int(a.addressable_shards[0].data.size * a.dtype.itemsize), a.sharding == s,
             distributed.describe(a.sharding)]
            for (path, a), s in zip(jax.tree_util.tree_leaves_with_path(state), jax.tree.leaves(shardings))]
    print(json.dumps(rows))
"""


def test_fsdp_state_from_init_is_really_sharded_on_four_devices():
    proc = run_python(STATE_SCRIPT, 4)
    assert proc.returncode == 0, proc.stderr
    rows = {path: row for path, *row in json.loads(proc.stdout)}
    assert "key" in rows and "step" in rows and "opt_state/0/count" in rows
    for path, (nbytes, shard_nbytes, as_planned, text) in rows.items():
        assert as_planned, path
        if nbytes >= 1024:
            assert (shard_nbytes * 4, text) == (nbytes, "fsdp on axis 0"), path
        else:
            assert (shard_nbytes, text) == (nbytes, "replicated"), path
    params = [row for path, row in rows.items() if path.startswith("params/")]
    assert len(params) == 4
    per_device = sum(row[1] for row in params) / sum(row[0] for row in params)
    assert per_device == pytest.approx(0.25, abs=0.002)  # the two small biases stay whole


SUMMARY_SCRIPT = """
    from jaxnn import Dense, Flatten, Sequential, Trainer, distributed, summary
    trainer = Trainer(Sequential([Flatten(), Dense(64), Dense(10)]), mesh=distributed.make_mesh({"fsdp": 2}),
                      min_shard_bytes=0)
    state = trainer.init(0, (8, 8))
    summary(trainer.model, (8, 8), params=state.params)  # no state given: the params' shardings still show
"""


def test_a_summary_of_given_params_without_a_state_shows_their_shardings():
    proc = run_python(SUMMARY_SCRIPT, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Sharding over mesh data=1 x fsdp=2:" in proc.stdout and "fsdp on axis" in proc.stdout


# --- same numbers on 1, 2, 4 and 8 devices --------------------------------------------------------------

SGD_SCRIPT = """
    import json, sys, jax, jax.numpy as jnp, numpy as np, optax
    from jaxnn import Dense, Flatten, Sequential, TrainState, distributed
    model, tx = Sequential([Flatten(), Dense(32, activation="relu"), Dense(10)]), optax.sgd(0.1)
    steps = int(sys.argv[1])
    rng = np.random.default_rng(0)
    images = rng.normal(size=(steps, 64, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 10, size=(steps, 64))

    def init():
        _, params, model_state = model.init(jax.random.key(1), (None, 8, 8))
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                          opt_state=tx.init(params), key=jax.random.key(0))

    def train_step(state, x, y):
        def loss_fn(params):
            logits, _ = model.apply(params, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                             opt_state=opt_state), loss

    losses = {}
    for devices, layout in [(1, "data"), *((n, layout) for n in (2, 4, 8) for layout in ("data", "fsdp"))]:
        mesh = distributed.make_mesh({layout: devices})  # one process may use the first n of its 8 devices
        shardings = distributed.state_shardings(jax.eval_shape(init), mesh, min_shard_bytes=0)
        batch = distributed.batch_sharding(mesh)
        step = jax.jit(train_step, in_shardings=(shardings, batch, batch),
                       out_shardings=(shardings, distributed.replicated(mesh)), donate_argnums=0)
        state = jax.jit(init, out_shardings=shardings)()
        curve = losses[f"{layout} x {devices}"] = []
        for x, y in zip(images, labels):
            state, loss = step(state, jax.device_put(x, batch), jax.device_put(y, batch))
            curve.append(float(loss))  # one step in flight: simulated devices stall on unbounded dispatch
    print(json.dumps(losses))
"""


@pytest.mark.slow
def test_data_parallel_and_fsdp_sgd_match_one_device_on_2_4_8():
    steps = 20
    proc = run_python(SGD_SCRIPT, 8, steps)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)
    reference = runs.pop("data x 1")
    assert len(runs) == 6 and len(reference) == steps and reference[-1] < reference[0]
    for run, curve in runs.items():
        gap = max(abs(a - b) for a, b in zip(curve, reference, strict=True))
        assert gap <= 1e-6, (run, gap)


# --- joining a multi-process run -----------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch):
    for name in ("JAXNN_COORDINATOR_ADDRESS", "JAXNN_NUM_PROCESSES", "JAXNN_PROCESS_ID", "SLURM_NTASKS",
                 "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_initialize_without_a_run_or_with_one_process_does_nothing(clean_env):
    assert distributed.initialize() is False
    assert distributed.initialize("127.0.0.1:1234", 1, 0) is False
    clean_env.setenv("JAXNN_NUM_PROCESSES", "1")
    clean_env.setenv("JAXNN_PROCESS_ID", "0")
    clean_env.setenv("JAXNN_COORDINATOR_ADDRESS", "127.0.0.1:1234")
    assert distributed.initialize() is False
    # A single-task srun is one process too.
    for name in distributed._CLUSTER_ENVS["SLURM"]:
        clean_env.setenv(name, "1")
    clean_env.delenv("JAXNN_NUM_PROCESSES")
    assert distributed.initialize() is False


@pytest.mark.parametrize("kwargs, env, message", [
    (dict(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=2), {},
     r"^process_id must be in 0..1 \(num_processes=2\), got 2$"),
    (dict(coordinator_address="127.0.0.1:1234", num_processes=0, process_id=0), {},
     "^num_processes must be a positive integer, got 0$"),
    (dict(coordinator_address="localhost", num_processes=2, process_id=0), {},
     "^coordinator_address must be host:port with a port in 1..65535, got 'localhost'$"),
    (dict(num_processes=2), {"JAXNN_PROCESS_ID": "1"},
     "^a multi-process run needs coordinator_address too \\(arguments or JAXNN_COORDINATOR_ADDRESS\\), "
     "got only num_processes=2, process_id=1$"),
    ({}, {"JAXNN_NUM_PROCESSES": "two"}, "^JAXNN_NUM_PROCESSES must be a non-negative integer, got 'two'$"),
    (dict(initialization_timeout_s=0), {}, "^initialization_timeout_s must be a positive number, got 0$"),
])
def test_initialize_bad_values_are_one_line(clean_env, kwargs, env, message):
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        distributed.initialize(**kwargs)


# --- bounded failure -----------------------------------------------------------------------------------

WATCHDOG_SCRIPT = """
    import sys, time
    from jaxnn import distributed
    step = 3
    with distributed.StepWatchdog(0.5, describe=lambda: f"step {step}") as watchdog:
        with watchdog.paused():
            time.sleep(1.2)  # compiling: no step for longer than the timeout, and no exit
        for step in range(4, 8):
            time.sleep(0.2)
            watchdog.beat()
        if sys.argv[1] == "stall":
            time.sleep(30)
    print("finished")
"""


def test_watchdog_is_quiet_while_paused_and_beating():
    proc = run_python(WATCHDOG_SCRIPT, 1, "run")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "finished\n", "")


def test_watchdog_ends_a_stalled_process_with_one_line():
    start = time.monotonic()
    proc = run_python(WATCHDOG_SCRIPT, 1, "stall")
    assert proc.returncode == 1 and time.monotonic() - start < 15
    assert proc.stderr == ("jaxnn: process 0 of 1: no step finished within 0.5 s after step 7; "
                           "a peer stopped making progress\n")


def test_collective_error_in_one_process_is_raised():
    with pytest.raises(jax.errors.JaxRuntimeError):
        with distributed.exit_on_collective_error(lambda: "step 1"):
            raise jax.errors.JaxRuntimeError("INTERNAL: boom")
    with pytest.raises(ValueError, match="not a runtime error"):
        with distributed.exit_on_collective_error(lambda: "step 1"):
            raise ValueError("not a runtime error")


PEER_SCRIPT = """
    import os, signal, time, numpy as np
    from jaxnn import distributed
    distributed.initialize(initialization_timeout_s=30)
    import jax
    mesh = distributed.make_mesh(dict(data=-1))
    total = jax.jit(lambda x: x.sum(), out_shardings=distributed.replicated(mesh))
    for step in range(1000):
        with distributed.exit_on_collective_error(lambda: f"step {step}"):
            x = jax.make_array_from_process_local_data(distributed.batch_sharding(mesh), np.ones(1, np.float32))
            assert float(total(x)) == 2
        if jax.process_index() == 1 and step == 3:
            print(time.time(), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.05)
"""


def test_a_dead_peer_ends_the_survivor_at_once_with_one_line():
    from jaxnn.launch import free_port

    env = dict(os.environ, PYTHONPATH=str(ROOT), JAXNN_COORDINATOR_ADDRESS=f"127.0.0.1:{free_port()}",
               JAXNN_NUM_PROCESSES="2")
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(PEER_SCRIPT)], cwd=ROOT, text=True,
                              env=dict(env, JAXNN_PROCESS_ID=str(i)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(2)]
    survivor, victim = procs
    died_at = float(victim.communicate(timeout=60)[0].split()[-1])
    _, stderr = survivor.communicate(timeout=60)
    ended_at = time.time()
    assert victim.returncode == -9 and survivor.returncode == 1
    assert ended_at - died_at < 5
    ours = [line for line in stderr.splitlines() if line.startswith("jaxnn:")]
    assert len(ours) == 1 and ours[0].startswith("jaxnn: process 0 of 2: step 4 failed: "), stderr
