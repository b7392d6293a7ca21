"""Where the wall time of a whole `train.py` process goes: imports, set-up, data, compile, fit, evaluation, end.

    python bench/bench_startup.py [--runs 5] [--config configs/fashion_mnist_seed.py] [-- --config.train.epochs=1]

Runs `train.py --config <config> --config.train.epochs=1 --workdir <fresh dir>`
`--runs` times (after one untimed run that fills the array cache and the XLA
compilation cache), each in a fresh process, and prints the median of each phase:

    imports   process start -> `jaxnn.runner.run` called (interpreter, absl, jax, jaxnn)
    setup     run called -> data loading starts (config, checkpoint directory)
    data      `jaxnn.data.load_splits` (train and test split)
    compile   tracing, lowering and compiling (or fetching from the compilation cache), wherever it happens
    fit       `Trainer.fit` without the compiling inside it
    eval      fit returned -> run returned (evaluation, final save, results files), without compiling
    end       run returned -> the process has exited (interpreter shutdown, atexit hooks)
    beyond    total - fit: the figure issue 18 asks to keep <= 5 s

The phases come from wrapping those functions in the child process and from
`jax.monitoring`'s compile-duration events; the total is measured by this parent.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("imports", "setup", "data", "compile", "fit", "eval", "end", "total", "beyond")
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")

# Runs train.py in the child with its phases timed; the marks go to $BENCH_MARKS as JSON.
PROBE = r"""
import functools, json, os, runpy, sys, time
import jax, jaxnn.data, jaxnn.runner
from jaxnn.training.trainer import Trainer
marks, compiles = {}, []

def listener(event, duration, **kwargs):
    if event in EVENTS:
        compiles.append((time.time(), duration))

jax.monitoring.register_event_duration_secs_listener(listener)

def timed(name, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        marks.setdefault(name + "_start", time.time())
        try:
            return fn(*args, **kwargs)
        finally:
            marks[name + "_end"] = time.time()
            if name == "run":
                with open(os.environ["BENCH_MARKS"], "w") as f:
                    json.dump(dict(marks=marks, compiles=compiles), f)
    return wrapper

jaxnn.runner.run = timed("run", jaxnn.runner.run)
jaxnn.data.load_splits = timed("data", jaxnn.data.load_splits)
Trainer.fit = timed("fit", Trainer.fit)
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_path("train.py", run_name="__main__")
""".replace("EVENTS", repr(COMPILE_EVENTS))


def one_run(config: str, overrides: list[str]) -> dict[str, float]:
    """The phases of one train.py process, in seconds."""
    with tempfile.TemporaryDirectory(prefix="jaxnn-bench-startup-") as tmp:
        env = dict(os.environ, BENCH_MARKS=os.path.join(tmp, "marks.json"))
        command = [sys.executable, "-c", PROBE, "--config", config, "--workdir", os.path.join(tmp, "run"),
                   "--config.train.epochs=1", *overrides]
        started = time.time()
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        ended = time.time()
        if proc.returncode:
            sys.exit(f"train.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(env["BENCH_MARKS"]) as f:
            probe = json.load(f)
    m = probe["marks"]
    if "data_start" not in m or "fit_start" not in m:
        sys.exit(f"{config} {' '.join(overrides)}: this run reads no data through jaxnn.data.load_splits or trains "
                 "no Trainer.fit (a streamed or toy dataset, another task), the phases this bench times; give an "
                 "in-memory classify config such as configs/fashion_mnist_seed.py")

    def compiling(lo, hi):
        return sum(d for t, d in probe["compiles"] if lo <= t <= hi)

    phases = dict(imports=m["run_start"] - started, setup=m["data_start"] - m["run_start"],
                  data=m["data_end"] - m["data_start"], compile=sum(d for _, d in probe["compiles"]),
                  fit=m["fit_end"] - m["fit_start"] - compiling(m["fit_start"], m["fit_end"]),
                  eval=m["run_end"] - m["fit_end"] - compiling(m["fit_end"], m["run_end"]),
                  end=ended - m["run_end"], total=ended - started)
    phases["beyond"] = phases["total"] - phases["fit"]
    return phases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--config", default="configs/fashion_mnist_seed.py")
    parser.add_argument("overrides", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args(argv)
    one_run(args.config, args.overrides)  # fills the array cache and the compilation cache
    runs = []
    for i in range(args.runs):
        runs.append(one_run(args.config, args.overrides))
        print(f"run {i + 1}: " + "  ".join(f"{k} {runs[-1][k]:.2f}" for k in PHASES), flush=True)
    print(f"median of {args.runs} (s): " + "  ".join(f"{k} {statistics.median(r[k] for r in runs):.2f}"
                                                     for k in PHASES))


if __name__ == "__main__":
    main()
