"""Cost of one checkpoint save of bench_fit.py's MLP train state, as the writer process pays it.

    python bench/bench_checkpoint_save.py [--repeats 5] [--saves 10]

The state is what `ModelCheckpoint` saves at an epoch end of bench_callbacks.py:
parameters, Adam's two moments, EarlyStopping's best weights and a few scalars
(11 MB, 29 arrays). Six ways, alternating so machine noise hits all alike:

- "improved": this checkpoint format (3) at an epoch that improved (best
  weights are the current ones, so stored once), packed into one orbax array
  per dtype, written without OCDBT and without orbax's copy of each array;
- "not improved": the same where the best weights differ (all 29 arrays stored);
- "with copy": as "improved", orbax copying each array before writing it (its default);
- "3 + OCDBT": as "with copy", written with orbax's OCDBT (as format 3 first was);
- "format 2": as "3 + OCDBT", but one orbax array per stored array;
- "format 1": as "format 2", zstd-compressed, identical arrays stored again.

Each figure is wall and CPU milliseconds per save (median over repeats of
`--saves` saves through one `CheckpointManager`), then its ratio to "format 1".
"""
from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import tempfile
import time
from unittest import mock

import numpy as np

from bench_fit import CLASSES, HIDDEN
from jaxnn import checkpoint as ckpt


def train_state(improved: bool, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    shapes = {"dense/kernel": (784, HIDDEN), "dense/bias": (HIDDEN,), "dense_1/kernel": (HIDDEN, HIDDEN),
              "dense_1/bias": (HIDDEN,), "dense_2/kernel": (HIDDEN, CLASSES), "dense_2/bias": (CLASSES,)}
    tree = lambda scale: {k: (scale * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}
    params = tree(0.05)
    best = {k: v.copy() for k, v in params.items()} if improved else tree(0.05)
    return {"state": {"params": params, "opt_state": {"mu": tree(1e-3), "nu": tree(1e-6), "count": np.int32(937)},
                      "step": np.int32(937), "key": np.array([0, 42], np.uint32)},
            "callbacks": {"EarlyStopping": best}, "totals": {"loss": np.float32(0.0), "count": np.float32(0.0)}}


def _an_array_each(entries, stored):
    return {f"a{i}": a for i, a in stored.items()}


def _orbax_default(**options):
    """A patch of the checkpointer for orbax's defaults (OCDBT on, zstd on, arrays copied) less `options`."""
    import orbax.checkpoint as ocp

    return mock.patch.object(ckpt, "_checkpointer",
                             lambda saving=False: ocp.Checkpointer(ocp.PyTreeCheckpointHandler(**options)))


def with_copy():
    """Saves as format 3 did until orbax's copy of each array was turned off."""
    return _orbax_default(use_compression=False, use_ocdbt=False)


def with_ocdbt():
    """Saves as format 3 did at first: packed, uncompressed, with OCDBT."""
    return _orbax_default(use_compression=False)


@contextlib.contextmanager
def format_2():
    """Saves as format 2 did: uncompressed, with OCDBT, identical arrays stored once, one orbax array each."""
    with _orbax_default(use_compression=False), mock.patch.object(ckpt, "_pack", _an_array_each):
        yield


@contextlib.contextmanager
def format_1():
    """Saves as format 1 did: OCDBT, zstd, every array stored (no `same_as`), one orbax array each."""
    with _orbax_default(), mock.patch.object(ckpt, "_same_bytes", lambda a, b: False), \
            mock.patch.object(ckpt, "_pack", _an_array_each):
        yield


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--saves", type=int, default=10)
    args = parser.parse_args()
    ways = {"improved": (train_state(True), contextlib.nullcontext),
            "not improved": (train_state(False), contextlib.nullcontext),
            "with copy": (train_state(True), with_copy),
            "3 + OCDBT": (train_state(True), with_ocdbt), "format 2": (train_state(True), format_2),
            "format 1": (train_state(True), format_1)}
    managers = {name: ckpt.CheckpointManager(tempfile.mkdtemp(prefix="bench-ckpt-"), keep=3) for name in ways}
    results = {name: [] for name in ways}
    step = 0
    for repeat in range(args.repeats + 1):  # the first round warms up
        for name, (tree, context) in ways.items():
            with context():
                start, cpu = time.perf_counter(), cpu_seconds()
                for _ in range(args.saves):
                    step += 1
                    managers[name].save(step, tree)
                wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
            if repeat:
                results[name].append((1e3 * wall / args.saves, 1e3 * cpu / args.saves))
    mb = sum(a.nbytes for a in ckpt.flatten(ways["improved"][0]).values()) / 1e6
    print(f"train state: {mb:.1f} MB in {len(ckpt.flatten(ways['improved'][0]))} arrays; "
          f"{args.repeats} x {args.saves} saves per way")
    base = [statistics.median(r[k] for r in results["format 1"]) for k in (0, 1)]
    for name, runs in results.items():
        wall, cpu = (statistics.median(r[k] for r in runs) for k in (0, 1))
        print(f"{name:13s} wall {wall:5.1f} ms  cpu {cpu:5.1f} ms per save   "
              f"vs format 1: wall {wall / base[0]:.2f}x  cpu {cpu / base[1]:.2f}x")


if __name__ == "__main__":
    main()
