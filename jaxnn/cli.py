"""train.py's contract with its user: one `error:` line per mistake, a documented exit status, signals that save.

    status = cli.main(lambda: body(argv), debug="--debug" in argv)

Exit statuses (docs/errors.md): 0 done; 2 a usage or config error (found before
any data is read, nothing written); 1 the run failed (data missing, disk full,
non-finite loss, damaged checkpoint); 130 Ctrl-C and 143 SIGTERM, each after
saving a checkpoint when training had started. `debug=True` prints the
traceback before the line.
"""
from __future__ import annotations

import ast
import contextlib
import errno
import logging
import os
import re
import signal
import sys
import threading
import traceback
from typing import Callable

from absl import flags

USAGE, FAILURE = 2, 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class UsageError(ValueError):
    """A mistake on the command line or in the config file: exit status 2."""


class Stopped(BaseException):
    """SIGTERM or Ctrl-C outside training (which saves and raises `TrainingInterrupted` instead).

    A BaseException, like KeyboardInterrupt, so that library code catching Exception lets it through.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_status(signum: int) -> int:
    """The shell's status for a stop by `signum`: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


def one_line(text: str) -> str:
    """`text`'s non-empty lines joined with '; ' (a message from below may span lines)."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


_DISK_FULL = ("No space left on device", f"os_error_code='{errno.ENOSPC}'")


def _disk_full(exc: BaseException) -> bool:
    """Whether `exc` or an exception it was raised from is a full disk (orbax reports ENOSPC in a ValueError)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or any(s in str(exc) for s in _DISK_FULL):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _os_error(e: OSError) -> str:
    where = f" ({e.filename})" if e.filename else ""
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write{where}: {e.strerror}; give a --workdir you can write to"
    return f"{e.strerror or one_line(str(e))}{where}"


def describe(exc: BaseException) -> tuple[str, int]:
    """The stderr line and exit status for `exc`, which ended the run."""
    from jaxnn.data import DatasetUnavailableError
    from jaxnn.training import TrainingInterrupted

    if isinstance(exc, TrainingInterrupted):
        return f"{one_line(str(exc))}; run the same command again to resume", signal_status(exc.signum)
    if isinstance(exc, Stopped):
        return (f"stopped by {exc} outside training; checkpoints are written during training and kept: "
                "run the same command again to resume", signal_status(exc.signum))
    if isinstance(exc, KeyboardInterrupt):
        return "stopped by SIGINT; run the same command again to resume", signal_status(signal.SIGINT)
    if _disk_full(exc):  # first: orbax reports a full disk as a ValueError, which is no usage error
        where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        detail = "" if isinstance(exc, OSError) else f"; {one_line(str(exc))[:300]}"  # says where, when wrapped
        return (f"error: no space left on the device{where}: free some space and run the same command again "
                f"(it resumes from the last checkpoint){detail}", FAILURE)
    if isinstance(exc, (flags.Error, ValueError)):
        return f"error: {one_line(str(exc))}", USAGE
    if isinstance(exc, DatasetUnavailableError):
        return f"error: {one_line(str(exc))}", FAILURE
    if isinstance(exc, OSError):
        return f"error: {_os_error(exc)}", FAILURE
    if _is_run_failure(exc):
        return f"error: {one_line(str(exc))}", FAILURE
    return (f"error: unexpected {type(exc).__name__}: {one_line(str(exc))} (--debug shows the traceback)",
            FAILURE)


def _is_run_failure(exc: BaseException) -> bool:
    """A failure jaxnn itself reports (non-finite training, a damaged checkpoint), with a message made for users."""
    from jaxnn.checkpoint import CheckpointError
    from jaxnn.training.guard import NonFiniteError

    return isinstance(exc, (NonFiniteError, CheckpointError))


def ignore_stop_signals() -> None:
    """From here on SIGTERM and Ctrl-C change nothing: the run is reporting how it ended, or exiting."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


class _OrbaxThreadErrors(logging.Filter):
    """Drops orbax's log of an exception in one of its worker threads (with the traceback): the same exception
    reaches the caller, which reports it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and f"orbax{os.sep}checkpoint" in record.pathname)


def quiet_library_logs() -> None:
    """Leave reporting errors to train.py: no traceback logged by orbax's threads (see `_OrbaxThreadErrors`)."""
    logging.getLogger("absl").addFilter(_ORBAX_THREAD_ERRORS)


_ORBAX_THREAD_ERRORS = _OrbaxThreadErrors()


def quiet_exit(status: int, debug: bool) -> None:
    """Before the interpreter exits with `status`: no late signal, and after an error line no more noise about
    the same failure (tensorboardX's atexit flush on a full disk, exceptions in orbax's threads); --debug keeps
    it. A failed process of a multi-process run exits at once (its peers may be dead)."""
    ignore_stop_signals()
    if status and not debug:
        sys.unraisablehook = lambda unraisable: None
        threading.excepthook = lambda args: None
    if status and "jaxnn.distributed" in sys.modules:
        from jaxnn import distributed

        if distributed.joined():  # a failed process of a multi-process run: not held by dead peers
            distributed.exit_failed(status)


@contextlib.contextmanager
def stop_signals_raise():
    """Within the block, the first SIGTERM or Ctrl-C raises `Stopped` (training installs its own handler that
    saves first). The old handlers come back after the block."""
    from jaxnn.training.loop import SigtermFlag

    def handle(signum, frame):
        SigtermFlag.pending = SigtermFlag.pending or signum  # if Python drops the exception, fit still stops
        raise Stopped(signum)

    old = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        SigtermFlag.pending = None
        for s, handler in old.items():
            signal.signal(s, handler)


def main(body: Callable[[], None], *, debug: bool = False) -> int:
    """Run `body()` with stop signals raising; an exception becomes one line on stderr and its exit status."""
    with stop_signals_raise():
        try:
            body()
            return 0
        except SystemExit:
            raise
        except BaseException as e:  # noqa: BLE001 (every way out of the run gets its line and status)
            ignore_stop_signals()
            line, status = describe(e)
            if debug:
                traceback.print_exc()
            print(line, file=sys.stderr, flush=True)
            return status


# -- flags and the config file ---------------------------------------------------------------

def _flag_value(argv, name: str, default):
    """The last `--name=value` / `--name value` in argv, else `default` (read before absl parses)."""
    value = default
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def check_config_file(path: str) -> None:
    """A config file must exist, parse, and define `get_config`; checked without running it."""
    path = path.split(":", 1)[0]  # `file.py:arg` passes `arg` to get_config
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise UsageError(f"config file {path} {what}; give --config=path/to/config.py (see configs/)")
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except SyntaxError as e:
        raise UsageError(f"config file {path} has a syntax error at line {e.lineno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"config file {path} cannot be read: {e}") from None
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    names |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
              if isinstance(t, ast.Name)}
    names |= {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
              for alias in node.names}
    if "get_config" not in names:
        raise UsageError(f"config file {path} defines no get_config(); it must define get_config() returning "
                         "an ml_collections.ConfigDict")


def _config_paths(config, prefix: str = "") -> list[str]:
    out = []
    for key in getattr(config, "keys", lambda: [])():
        value = config[key]
        path = f"{prefix}{key}"
        out += _config_paths(value, f"{path}.") if hasattr(value, "keys") else [path]
    return out


def _unknown_flag(e: flags.UnrecognizedFlagError, flag_values, config_flag: str) -> UsageError:
    try:
        config = flag_values[config_flag].value
        fields = [p for p in _config_paths(config) if p.rsplit(".", 1)[-1] == e.flagname]
    except Exception:  # noqa: BLE001 (the config did not load: no suggestion from it)
        fields = []
    value = e.flagvalue.split("=", 1)[1] if "=" in e.flagvalue else "..."
    hint = (f"; did you mean --{config_flag}.{fields[0]}={value}?" if fields else
            f"; known flags: {', '.join(sorted(f'--{n}' for n in flag_values if '.' not in n and n != 'h'))}, "
            f"and --{config_flag}.<section>.<field> to override a config field")
    return UsageError(f"unknown flag --{e.flagname}{hint}")


def _illegal_value(e: flags.IllegalFlagValueError, path: str) -> UsageError:
    if "Error whilst parsing config file" in str(e):  # get_config raised TypeError/ValueError
        last = [line for line in str(e).splitlines() if line.strip()][-1]
        return UsageError(f"config file {path}: get_config() raised {last.strip()}")
    m = re.match(r"flag (--[^=]+)=(.*?): (.*)", one_line(str(e)), re.S)
    if not m:
        return UsageError(one_line(str(e)))
    flag, value, reason = m.groups()
    kind = re.search(r"invalid literal for (\w+)\(\)|could not convert string to (\w+)", reason)
    if kind:
        name = {"int": "an integer", "float": "a number"}.get(kind.group(1) or kind.group(2), kind.group(0))
        return UsageError(f"{flag} must be {name}, got {value!r}")
    return UsageError(f"{flag}={value}: {reason}")


def _config_file_error(e: Exception, path: str) -> UsageError | None:
    """The line for an error raised while running the config file's get_config, else None."""
    text = str(e)
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(path)]
    if ours:
        return UsageError(f"config file {path}, line {ours[-1].lineno}: {type(e).__name__}: {one_line(text)}")
    return None


def parse_flags(flag_values: flags.FlagValues, argv: list[str], *, config_flag: str = "config",
                default_config: str) -> list[str]:
    """Parse `argv` into `flag_values`; any mistake (flag, value, config file, override) raises one UsageError line.

    Returns the arguments left (the program name).
    """
    path = _flag_value(argv, config_flag, default_config)
    check_config_file(path)
    try:
        rest = flag_values(argv)
    except flags.UnrecognizedFlagError as e:
        raise _unknown_flag(e, flag_values, config_flag) from None
    except flags.IllegalFlagValueError as e:
        raise _illegal_value(e, path.split(":", 1)[0]) from None
    except flags.Error as e:
        raise UsageError(one_line(str(e))) from None
    except Exception as e:  # noqa: BLE001 (the config file's own code, or an override of no field)
        from_file = _config_file_error(e, path.split(":", 1)[0])
        if from_file is not None:
            raise from_file from None
        if isinstance(e, (AttributeError, KeyError)):
            field = re.search(r"'(\w+)\\*'", str(e))
            hint = re.search(r'Did you mean "(\w+)"', str(e))
            name = field.group(1) if field else one_line(str(e))
            section = _missing_section(argv, config_flag, name)
            raise UsageError(f"a --{config_flag} override names no config field: {name}"
                             + (f' (did you mean "{hint.group(1)}"?)' if hint else "")
                             + (f"; the config file leaves out {section}: give it whole, e.g. "
                                f"--{config_flag}.{section}=\"{{'field': value}}\"" if section and not hint else "")
                             ) from None
        raise
    check_config(flag_values[config_flag].value, path)
    return rest


def _missing_section(argv, config_flag: str, name: str) -> str | None:
    """The dotted section `name` ends, when an override sets a field inside `name` (e.g. train.per_example),
    else None: a config file that leaves out a section can take it as one dict literal."""
    for arg in argv:
        if arg.startswith(f"--{config_flag}."):
            parts = arg[len(config_flag) + 3:].split("=", 1)[0].split(".")
            if name in parts[:-1]:
                return ".".join(parts[:parts.index(name) + 1])
    return None


def check_config(config, path: str) -> None:
    """get_config() must have returned a ConfigDict."""
    import ml_collections

    if not isinstance(config, ml_collections.ConfigDict):
        raise UsageError(f"get_config() in {path} must return an ml_collections.ConfigDict, got "
                         f"{type(config).__name__}: return ml_collections.ConfigDict({{...}})")


# -- compile cache -----------------------------------------------------------------------------

def enable_compilation_cache(cache_dir: str, warn: Callable[[str], None]) -> bool:
    """Keep compiled steps in `cache_dir` so that a second run of the same config skips compiling.

    A cache directory (or its nearest existing parent) owned by another user is not used (whoever owns it
    could plant compiled code): one warning line, and the run compiles as usual. Returns whether it is used.
    """
    import jax

    existing = cache_dir
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    owner = os.stat(existing).st_uid
    if owner != os.getuid() and (existing == cache_dir or owner != 0):
        warn(f"warning: not using the compile cache {cache_dir}: {existing} belongs to uid {owner}, not to you "
             f"(uid {os.getuid()}); set JAXNN_COMPILATION_CACHE to a directory of yours")
        return False
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return True
