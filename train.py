"""Train a jaxnn config:  python train.py --config configs/fashion_mnist_mlp.py --workdir runs/mlp

Override any field from the command line, e.g. `--config.train.epochs=3`;
a misspelled field is an error. Running again with the same `--workdir`
resumes from its newest checkpoint; SIGTERM saves one and exits (status 143).
"""
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/fashion_mnist_mlp.py", "Path to a config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for history, results, curves and checkpoints.")
_QUIET = flags.DEFINE_bool("quiet", False, "Print nothing but warnings and errors (no summary, no progress).")


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
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required (where results, curves and checkpoints go)")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    _enable_compilation_cache()
    from jaxnn.checkpoint import CheckpointError
    from jaxnn.runner import NonFiniteError, run
    from jaxnn.training import TrainingInterrupted

    try:
        run(_CONFIG.value, _WORKDIR.value, print_fn=None if _QUIET.value else print)
    except TrainingInterrupted as e:
        print(f"{e}; run the same command again to resume", file=sys.stderr)
        sys.exit(143)
    except (ValueError, NonFiniteError, CheckpointError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
