"""Train a jaxnn config:  python train.py --config configs/fashion_mnist_mlp.py --workdir runs/mlp

Override any field from the command line, e.g. `--config.train.epochs=3`;
a misspelled field is an error. Running again with the same `--workdir`
resumes from its newest checkpoint. Every mistake is one `error:` line on
stderr; exit status 2 for a usage or config error, 1 for a failed run, 130
after Ctrl-C and 143 after SIGTERM (each saves a checkpoint first);
`--debug` adds the traceback (docs/errors.md). Many devices and hosts
(`mesh` and `distributed` sections, `--dry_run`, `python -m jaxnn.launch`,
`srun`): docs/distributed.md.
"""
import os
import sys

from absl import flags, logging
from ml_collections import config_flags

DEFAULT_CONFIG = "configs/fashion_mnist_mlp.py"


def define_flags(flag_values: flags.FlagValues, argv: list[str]) -> dict:
    """train.py's flags, defined on `flag_values` (a fresh set per call, so `main` can run many times)."""
    return dict(
        config=config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Path to a config file.",
                                               flag_values=flag_values, sys_argv=argv, lock_config=False,
                                               accept_new_attributes=True),
        workdir=flags.DEFINE_string("workdir", None, "Directory for history, results, curves and checkpoints.",
                                    flag_values=flag_values),
        quiet=flags.DEFINE_bool("quiet", False, "Print nothing but warnings and errors (no summary, no progress).",
                                flag_values=flag_values),
        debug=flags.DEFINE_bool("debug", False, "Show the traceback of an error.", flag_values=flag_values),
        coordinator_address=flags.DEFINE_string(
            "coordinator_address", None, "host:port of process 0 of a multi-process run (else "
            "JAXNN_COORDINATOR_ADDRESS, or SLURM/Open MPI detection).", flag_values=flag_values),
        num_processes=flags.DEFINE_integer("num_processes", None, "Processes in the run (else JAXNN_NUM_PROCESSES).",
                                           flag_values=flag_values),
        process_id=flags.DEFINE_integer("process_id", None, "This process's index (else JAXNN_PROCESS_ID).",
                                        flag_values=flag_values),
        dry_run=flags.DEFINE_bool("dry_run", False, "Compile the train step for the configured mesh on abstract "
                                  "shapes, print its memory, FLOPs and shardings, and exit (reads no data).",
                                  flag_values=flag_values),
        device_memory_gb=flags.DEFINE_float("device_memory_gb", None, "With --dry_run: fail when a step needs more "
                                            "GiB per device (default: the device's own memory, when it reports one).",
                                            flag_values=flag_values),
        help=flags.DEFINE_bool("help", False, "Show this help.", short_name="h", flag_values=flag_values),
    )


def train(argv: list[str]) -> None:
    """Parse `argv`, check what can be checked without data, run; raises on any mistake (see jaxnn.cli)."""
    from jaxnn import cli

    flag_values = flags.FlagValues()
    defined = define_flags(flag_values, argv)
    rest = cli.parse_flags(flag_values, argv, default_config=DEFAULT_CONFIG)
    if defined["help"].value:
        print(flag_values.get_help())
        return
    if len(rest) > 1:
        raise cli.UsageError(f"unexpected arguments: {' '.join(rest[1:])} (flags take the form --name=value)")
    if not defined["workdir"].value and not defined["dry_run"].value:
        raise cli.UsageError("--workdir is required (where results, curves and checkpoints go)")
    from jaxnn import config, distributed

    options = config.distributed_options(defined["config"].value)  # joining a run comes before any other JAX call
    distributed.initialize(defined["coordinator_address"].value, defined["num_processes"].value,
                           defined["process_id"].value, initialization_timeout_s=options["initialization_timeout_s"],
                           heartbeat_timeout_s=options["heartbeat_timeout_s"])
    flags.FLAGS.mark_as_parsed()  # absl's logging reads its own flags: their defaults
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    if not defined["debug"].value:
        cli.quiet_library_logs()
    cli.enable_compilation_cache(
        os.environ.get("JAXNN_COMPILATION_CACHE", os.path.expanduser("~/.cache/jaxnn/xla")),
        warn=lambda line: print(line, file=sys.stderr))
    print_fn = None if defined["quiet"].value else print
    if defined["dry_run"].value:
        from jaxnn.dry_run import dry_run

        dry_run(defined["config"].value, device_memory_gb=defined["device_memory_gb"].value, print_fn=print_fn)
        return
    from jaxnn.runner import run

    run(defined["config"].value, defined["workdir"].value, print_fn=print_fn)


def _debug(argv: list[str]) -> bool:
    return any(a in ("--debug", "--debug=true", "--debug=1") for a in argv)


def main(argv: list[str]) -> int:
    """train.py as a function: the exit status; errors are one line on stderr (jaxnn.cli)."""
    from jaxnn import cli

    return cli.main(lambda: train(argv), debug=_debug(argv))


if __name__ == "__main__":
    status = main(sys.argv)
    from jaxnn import cli

    cli.quiet_exit(status, _debug(sys.argv))
    sys.exit(status)
