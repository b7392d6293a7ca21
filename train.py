"""Train a jaxnn config:  python train.py --config configs/fashion_mnist_mlp.py --workdir runs/mlp

Override any field from the command line, e.g. `--config.train.epochs=3`;
a misspelled field is an error. Running again with the same `--workdir`
resumes from its newest checkpoint; SIGTERM saves one and exits (status 143).
Many devices and hosts (`mesh` and `distributed` sections, `--dry_run`,
`python -m jaxnn.launch`, `srun`): docs/distributed.md.
"""
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/fashion_mnist_mlp.py", "Path to a config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for history, results, curves and checkpoints.")
_QUIET = flags.DEFINE_bool("quiet", False, "Print nothing but warnings and errors (no summary, no progress).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 of a multi-process run "
                                   "(else JAXNN_COORDINATOR_ADDRESS, or SLURM/Open MPI detection).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run (else JAXNN_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (else JAXNN_PROCESS_ID).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Compile the train step for the configured mesh on abstract shapes, "
                             "print its memory, FLOPs and shardings, and exit (reads no data).")
_DEVICE_MEMORY_GB = flags.DEFINE_float("device_memory_gb", None, "With --dry_run: fail when a step needs more GiB "
                                       "per device (default: the device's own memory, when it reports one).")


def _enable_compilation_cache() -> None:
    """Keep compiled steps on disk so that a second run of the same config skips compiling."""
    import jax

    cache_dir = os.environ.get("JAXNN_COMPILATION_CACHE", os.path.expanduser("~/.cache/jaxnn/xla"))
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def parse_flags(argv):
    """absl flag parsing, with an override that names no config field reported in one line."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
        field = re.search(r"'(\w+)\\*'", str(e))
        hint = re.search(r'Did you mean "(\w+)"', str(e))
        sys.exit(f"error: a --config override names no config field: {field.group(1) if field else e}"
                 + (f' (did you mean "{hint.group(1)}"?)' if hint else ""))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _WORKDIR.value and not _DRY_RUN.value:
        raise app.UsageError("--workdir is required (where results, curves and checkpoints go)")
    from jaxnn import config, distributed

    try:  # joining a multi-process run comes before any other JAX call
        options = config.distributed_options(_CONFIG.value)
        distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                               initialization_timeout_s=options["initialization_timeout_s"],
                               heartbeat_timeout_s=options["heartbeat_timeout_s"])
    except ValueError as e:
        sys.exit(f"error: {e}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    _enable_compilation_cache()
    from jaxnn.checkpoint import CorruptCheckpointError
    from jaxnn.dry_run import dry_run
    from jaxnn.runner import NonFiniteError, run
    from jaxnn.training import TrainingInterrupted

    print_fn = None if _QUIET.value else print
    try:
        if _DRY_RUN.value:
            dry_run(_CONFIG.value, device_memory_gb=_DEVICE_MEMORY_GB.value, print_fn=print_fn)
        else:
            run(_CONFIG.value, _WORKDIR.value, print_fn=print_fn)
    except TrainingInterrupted as e:
        print(f"{e}; run the same command again to resume", file=sys.stderr)
        sys.exit(143)
    except (ValueError, NonFiniteError, CorruptCheckpointError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
