"""Many devices and many hosts: the mesh, where each state leaf lives, joining a multi-process run, bounded failure.

One device is the trivial mesh, so the same code runs everywhere:

    mesh = make_mesh(dict(data=-1, fsdp=1))                   # every device data parallel
    shardings = state_shardings(jax.eval_shape(init, key), mesh)
    state = jax.jit(init, out_shardings=shardings)(key)

Parameters follow big_vision's FSDP rule unless a regex rule on their path says otherwise
(`{"dense_1/kernel": (None, "fsdp")}`, as Keras's LayoutMap).
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import threading
import time

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxnn.validation import integer, is_int, positive_number, require

AXES = ("data", "fsdp")
MESH_DEFAULTS = dict(data=1, fsdp=1)

# big_vision's FSDP threshold: below a few MiB an all-gather costs its fixed latency rather than
# its bytes, and the memory it would save is negligible next to the large leaves.
MIN_SHARD_BYTES = 4 * 2**20

# The variables JAX's own cluster detection reads (jax/_src/clusters) under SLURM's srun and Open MPI's
# mpirun; the first one holds the process count.
_CLUSTER_ENVS = {
    "SLURM": ("SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID"),
    "Open MPI": ("OMPI_COMM_WORLD_SIZE", "OMPI_MCA_orte_hnp_uri"),
}
_ENV = dict(coordinator_address="JAXNN_COORDINATOR_ADDRESS", num_processes="JAXNN_NUM_PROCESSES",
            process_id="JAXNN_PROCESS_ID")
# JAX's own initialization deadline is set this much later than ours, so that a run whose peers never
# arrive ends with our one line rather than JAX's fatal log and stack trace.
_JAX_DEADLINE_MARGIN_S = 5


def make_mesh(spec, devices=None) -> Mesh:
    """A mesh with axes ("data", "fsdp") from e.g. `dict(data=-1, fsdp=2)`; -1 takes all the devices left.

    A single process may use the first `data x fsdp` devices; in a multi-process run every device takes part.
    The axes are Auto, so XLA inserts FSDP's all-gathers (Explicit axes would need a reshard before each matmul).
    """
    sizes = _mesh_sizes(spec)
    devices = list(jax.devices() if devices is None else devices)
    sizes = _resolve_sizes(sizes, len(devices), must_use_all=jax.process_count() > 1)
    count = math.prod(sizes.values())
    return jax.make_mesh(tuple(sizes[a] for a in AXES), AXES, axis_types=(AxisType.Auto,) * len(AXES),
                         devices=devices[:count])


def _mesh_sizes(spec) -> dict:
    require("mesh", spec, hasattr(spec, "keys"), "a dict of axis sizes, e.g. dict(data=-1, fsdp=1)")
    sizes = dict(MESH_DEFAULTS)
    for name, value in dict(spec).items():
        if name not in AXES:
            raise ValueError(f"mesh.{name} is not a mesh axis: the axes are {', '.join(AXES)}")
        require(f"mesh.{name}", value, is_int(value) and (value >= 1 or value == -1),
                "a positive integer or -1 (all the devices left)")
        sizes[name] = int(value)
    if list(sizes.values()).count(-1) > 1:
        raise ValueError(f"{_spelled(sizes)}: at most one mesh axis can be -1")
    return sizes


def _resolve_sizes(sizes: dict, available: int, must_use_all: bool) -> dict:
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if -1 in sizes.values():
        if available % fixed:
            raise ValueError(f"{_spelled(sizes)} needs a multiple of {fixed} devices; {available} are available: "
                             f"use sizes whose product divides {available}")
        return {name: available // fixed if size == -1 else size for name, size in sizes.items()}
    if fixed > available:
        raise ValueError(f"{_spelled(sizes)} needs {fixed} devices; {available} are available: "
                         f"use at most {available} devices in all, or -1")
    if must_use_all and fixed != available:
        raise ValueError(f"{_spelled(sizes)} needs {fixed} devices, but every one of the {available} devices of "
                         f"a {jax.process_count()}-process run must take part: use sizes whose product is "
                         f"{available}, or -1")
    return sizes


def _spelled(sizes: dict) -> str:
    return " x ".join(f"mesh.{name}={size}" for name, size in sizes.items())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading (batch) axis over every mesh axis: FSDP's devices also each take their own rows."""
    return NamedSharding(mesh, PartitionSpec(AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh (scalars, metrics, small leaves)."""
    return NamedSharding(mesh, PartitionSpec())


def check_global_batch(mesh: Mesh, batch_size, field: str = "train.batch_size") -> None:
    """One line unless the global batch splits evenly over the batch axes (data x fsdp)."""
    ways = math.prod(mesh.shape[a] for a in AXES)
    require(field, batch_size, integer(field, batch_size, 1) % ways == 0,
            f"divisible by the data-parallel size {ways} ({_spelled(dict(mesh.shape))})")


def state_shardings(abstract_tree, mesh: Mesh, rules=(), min_shard_bytes: int = MIN_SHARD_BYTES):
    """A NamedSharding for every leaf of a pytree of arrays or ShapeDtypeStructs (a whole TrainState).

    A leaf takes the spec of the first rule whose regex is found in its path ("params/dense_1/kernel",
    "opt_state/0/mu/dense_1/kernel": a rule on a kernel also places its optimizer moments); else, when
    it has at least `min_shard_bytes`, it is split over `fsdp` along its largest axis divisible by the
    fsdp size (the last such axis on a tie: big_vision's choice, and for a kernel it is the output axis,
    the one its bias is split along); else it is replicated.

        state_shardings(abstract, mesh, rules={"dense_1/kernel": (None, "fsdp")})
    """
    compiled = _compile_rules(rules)
    min_shard_bytes = integer("min_shard_bytes", min_shard_bytes, 0)

    def sharding(path, leaf):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        spec = _rule_spec(name, leaf, mesh, compiled)
        if spec is None:
            spec = _fsdp_spec(leaf, mesh.shape["fsdp"], min_shard_bytes)
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(sharding, abstract_tree)


def _compile_rules(rules) -> list:
    pairs = rules.items() if hasattr(rules, "items") else rules
    compiled = []
    for pattern, spec in pairs:
        try:
            compiled.append((pattern, re.compile(pattern), PartitionSpec(*spec)))
        except re.error as err:
            raise ValueError(f"sharding rule {pattern!r} must be a regular expression ({err})") from None
    return compiled


def _rule_spec(name: str, leaf, mesh: Mesh, compiled: list) -> PartitionSpec | None:
    pattern, spec = next(((p, s) for p, regex, s in compiled if regex.search(name)), (None, None))
    if spec is None:
        return None
    where = f"sharding rule {pattern!r} gives {tuple(spec)} for {name} of shape {tuple(leaf.shape)}"
    if len(spec) > len(leaf.shape):
        raise ValueError(f"{where}: {len(spec)} axes for a rank-{len(leaf.shape)} leaf")
    used = [axis for entry in spec for axis in _axis_names(entry)]
    for axis in used:
        if axis not in mesh.shape:
            raise ValueError(f"{where}: {axis!r} is not a mesh axis ({', '.join(mesh.shape)})")
    if len(set(used)) < len(used):
        raise ValueError(f"{where}: a mesh axis can split only one axis of a leaf")
    for dim, entry in enumerate(spec):
        ways = math.prod(mesh.shape[axis] for axis in _axis_names(entry))
        if leaf.shape[dim] % ways:
            raise ValueError(f"{where}: axis {dim} of size {leaf.shape[dim]} does not split {ways} ways")
    return spec


def _fsdp_spec(leaf, fsdp: int, min_shard_bytes: int) -> PartitionSpec:
    shape = tuple(leaf.shape)
    if fsdp == 1 or math.prod(shape) * leaf.dtype.itemsize < min_shard_bytes:
        return PartitionSpec()
    divisible = [dim for dim, size in enumerate(shape) if size % fsdp == 0]
    if not divisible:
        return PartitionSpec()
    dim = max(divisible, key=lambda d: (shape[d], d))
    return PartitionSpec(*(["fsdp" if d == dim else None for d in range(dim + 1)]))


def _axis_names(entry) -> tuple:
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def describe(sharding) -> str:
    """Short text for summary tables: "fsdp on axis 1", "data on axis 0", "replicated"."""
    if sharding.is_fully_replicated:
        return "replicated"
    shape = dict(sharding.mesh.shape)
    parts = []
    for dim, entry in enumerate(sharding.spec):
        names = [axis for axis in _axis_names(entry) if shape[axis] > 1]
        if names:
            parts.append(f"{'+'.join(names)} on axis {dim}")
    return ", ".join(parts)


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, initialization_timeout_s: float = 300,
               heartbeat_timeout_s: float = 30) -> bool:
    """Join a multi-process run (call before any other JAX call); True when one was joined.

    Arguments, else JAXNN_COORDINATOR_ADDRESS / JAXNN_NUM_PROCESSES / JAXNN_PROCESS_ID, else JAX's
    cluster detection under SLURM's srun or Open MPI's mpirun; otherwise (or with one process) nothing.
    If the run is not complete within `initialization_timeout_s`, this process prints one line and exits.
    """
    positive_number("initialization_timeout_s", initialization_timeout_s)
    positive_number("heartbeat_timeout_s", heartbeat_timeout_s)
    given = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
    values = {name: _from_env(name) if value is None else value for name, value in given.items()}
    cluster = _detected_cluster()
    if cluster is None and all(value is None for value in values.values()):
        return False
    if cluster is None:
        _check_explicit(values)
    if (values["num_processes"] or int(os.environ[_CLUSTER_ENVS[cluster][0]])) == 1:
        return False
    where = ("this process" if values["process_id"] is None
             else f"process {values['process_id']} of {values['num_processes'] or '?'}")
    at = values["coordinator_address"] or f"the {cluster} coordinator"
    deadline = threading.Timer(initialization_timeout_s, _fatal, args=(
        f"{where}: the run at {at} was not complete within {initialization_timeout_s:g} s; check the process "
        f"count on every process and the coordinator address",))
    deadline.daemon = True
    deadline.start()
    # JAX's preemption service takes SIGTERM at the C level, so Python's handler (a stop outside training, or
    # fit's agreed stop) no longer ran: a SIGTERM while a run loaded data or compiled was lost. jaxnn's own
    # stop agreement (training.loop) does what that service would.
    jax.config.update("jax_enable_preemption_service", False)
    try:
        jax.distributed.initialize(
            values["coordinator_address"], values["num_processes"], values["process_id"],
            initialization_timeout=math.ceil(initialization_timeout_s) + _JAX_DEADLINE_MARGIN_S,
            heartbeat_timeout_seconds=math.ceil(heartbeat_timeout_s))
    finally:
        deadline.cancel()
    global _joined
    _joined = True
    return True


_joined = False


def joined() -> bool:
    """Whether this process joined a multi-process run through `initialize`."""
    return _joined


def exit_failed(status: int) -> None:
    """End a failed process of a multi-process run now, with `status`: the interpreter's exit would wait in
    jax.distributed's shutdown for peers that may be dead (its own line is already printed)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


def _from_env(name: str):
    text = os.environ.get(_ENV[name])
    if text is None or name == "coordinator_address":
        return text
    require(_ENV[name], text, re.fullmatch(r"\d+", text.strip()) is not None, "a non-negative integer")
    return int(text)


def _detected_cluster() -> str | None:
    return next((name for name, variables in _CLUSTER_ENVS.items() if all(v in os.environ for v in variables)),
                None)


def _check_explicit(values: dict) -> None:
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise ValueError(f"a multi-process run needs {', '.join(missing)} too (arguments or "
                         f"{', '.join(_ENV[name] for name in missing)}), got only "
                         f"{', '.join(f'{n}={v!r}' for n, v in values.items() if v is not None)}")
    address = values["coordinator_address"]
    host, _, port = address.rpartition(":")
    require("coordinator_address", address, bool(host) and port.isdigit() and 0 < int(port) < 65536,
            "host:port with a port in 1..65535")
    processes = integer("num_processes", values["num_processes"], 1, "a positive integer")
    require("process_id", values["process_id"],
            integer("process_id", values["process_id"], 0) < processes,
            f"in 0..{processes - 1} (num_processes={processes})")


def _fatal(line: str) -> None:
    """Print one line and end this process now: jax.distributed.shutdown would wait for dead peers."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    print(f"jaxnn: {line}", file=sys.stderr, flush=True)
    os._exit(1)


def _process() -> str:
    return f"process {jax.process_index()} of {jax.process_count()}"


class StepWatchdog:
    """Ends this process with one line when no step finishes for `timeout_s` (a peer stuck but alive).

    `describe()` names the last finished step, e.g. `lambda: f"step {step}"`. Call `beat()` after each
    step; wrap compiling and checkpointing in `with watchdog.paused():`.
    """

    def __init__(self, timeout_s: float, describe):
        self.timeout_s = positive_number("watchdog timeout_s", timeout_s)
        self._describe = describe
        self._where = _process()
        self._lock = threading.Lock()
        self._last_beat = time.monotonic()
        self._pauses = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="jaxnn-step-watchdog", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        """A step finished: the clock starts again."""
        with self._lock:
            self._last_beat = time.monotonic()

    @contextlib.contextmanager
    def paused(self):
        """Disarmed inside (compiling, checkpointing); the clock starts again on leaving."""
        with self._lock:
            self._pauses += 1
        try:
            yield self
        finally:
            with self._lock:
                self._pauses -= 1
                self._last_beat = time.monotonic()

    def close(self) -> None:
        """Stop watching (the run ended)."""
        self._closed.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _watch(self) -> None:
        while True:
            with self._lock:
                left = self.timeout_s if self._pauses else self._last_beat + self.timeout_s - time.monotonic()
            if left <= 0:
                _fatal(f"{self._where}: no step finished within {self.timeout_s:g} s after {self._describe()}; "
                       f"a peer stopped making progress")
            if self._closed.wait(left):
                return


# XLA's status codes start the message of a runtime error ("UNKNOWN: Gloo all-reduce failed: ...");
# CPU collectives (Gloo) raise them as ValueError, GPU and TPU ones as JaxRuntimeError.
_XLA_STATUS = re.compile(r"[A-Z][A-Z_]+: ")


@contextlib.contextmanager
def exit_on_collective_error(describe):
    """In a multi-process run, a runtime error inside (a peer died) ends this process at once with one line.

    `describe()` names the step, e.g. `lambda: f"step {step}"`. One process re-raises: there is nobody to wait for.
    """
    try:
        yield
    except (jax.errors.JaxRuntimeError, ValueError) as err:
        message = str(err).strip()
        from_xla = isinstance(err, jax.errors.JaxRuntimeError) or _XLA_STATUS.match(message)
        if jax.process_count() == 1 or not from_xla:
            raise
        first = message.splitlines()[0] if message else type(err).__name__
        _fatal(f"{_process()}: {describe()} failed: {first[:200]}")
