"""vmap ensembles: M seed models of the seed config in one jitted step against one model, on Fashion-MNIST.

    python bench/bench_ensemble.py [--members 8] [--epochs 5] [--rounds 3] [--conv-steps 20] [--train-py-rounds 3]
                                   [--data FILE.npz] [--save-data FILE.npz]

`--save-data` writes the Fashion-MNIST arrays this bench trains on (read through TFDS, as `load_splits` gives
them) to a compressed .npz of 31 MB and exits; `--data` reads them from there instead of TFDS: for a machine
without TFDS or TensorFlow, such as a lent GPU machine (use `--train-py-rounds 0` there, as train.py reads TFDS).

Prints:
  - wall time of `fit` for one model and for `--members` members at once (the seed
    config: 784-100 sigmoid-10, RMSprop, batch 32, 20% validation), medians of
    `--rounds` alternated rounds after a compiling run, and their ratio;
  - each member's History against that member trained alone (largest difference);
  - each member's test accuracy, and the ensemble's (the mean of the members' probabilities);
  - the same ratio for hand-written loops (an epoch as one `lax.scan`, and that epoch `jax.vmap`ped over the
    members, each with its own order): what this machine allows once the step is compute-bound;
  - for the CNN of configs/fashion_mnist_cnn.py, the train step of 4 members by
    `jax.vmap` against `lax.map` over the members (median step time), which says
    which of the two an ensemble of convolutions should use on this backend;
  - the same comparison as a user makes it: `train.py` on configs/fashion_mnist_seed.py against
    configs/fashion_mnist_seed_ensemble.py (`--members` seeds; train.py's callbacks on), each a fresh process
    after one warm-up run of each (the compilation and array caches filled): the whole process's wall time
    and `train_seconds` (the time inside fit) from results.json, medians of `--train-py-rounds` alternated rounds.
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

import jax
import numpy as np

from jaxnn import Conv2D, Dense, Dropout, Flatten, MaxPooling2D, Sequential, Trainer, optimizers
from jaxnn.data import load_splits


def seed_trainer() -> Trainer:
    return Trainer(Sequential([Flatten(), Dense(100, "sigmoid"), Dense(10, "softmax")]),
                   loss="sparse_categorical_crossentropy", optimizer=optimizers.get("rmsprop"))


def fit(keys, x, y, epochs: int):
    trainer = seed_trainer()
    start = time.perf_counter()
    state, history = trainer.fit(trainer.init(keys, x.shape[1:]), x, y, epochs=epochs, batch_size=32,
                                 validation_split=0.2, verbose=0)
    jax.block_until_ready(state.params)
    return time.perf_counter() - start, trainer, state, history


def save_arrays(path: str) -> None:
    """The train and test splits as `load_splits` gives them, stored as uint8 pixels (x255: the same floats back)."""
    (x, y), (x_test, y_test) = load_splits("fashion_mnist", ["train", "test"])
    pixels = {name: np.rint(a * 255).astype(np.uint8) for name, a in (("x_train", x), ("x_test", x_test))}
    for name, a in (("x_train", x), ("x_test", x_test)):
        if not np.array_equal(np.divide(pixels[name], 255, dtype=np.float32), a):
            sys.exit(f"{name} is not a whole number of 255ths: cannot store it as uint8 pixels")
    np.savez_compressed(path, y_train=y, y_test=y_test, **pixels)


def load_arrays(path: str):
    """`((x, y), (x_test, y_test))` from a `save_arrays` file."""
    with np.load(path) as data:
        return [(np.divide(data[f"x_{s}"], 255, dtype=np.float32), data[f"y_{s}"]) for s in ("train", "test")]


def largest_difference(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(np.subtract(a[k], b[k])))) for k in a)


def conv_members(members: int, steps: int) -> dict[str, float]:
    """Median seconds of a train step of `members` CNNs: vmap over members against lax.map over them."""
    model = Sequential([Conv2D(32, 3, padding="same", activation="relu"), MaxPooling2D(2),
                        Conv2D(64, 3, padding="same", activation="relu"), MaxPooling2D(2), Flatten(), Dropout(0.3),
                        Dense(128, "relu"), Dropout(0.3), Dense(10, "softmax")])
    trainer = Trainer(model, optimizer=optimizers.get("adam"))
    step = trainer._make_train_step()
    rng = np.random.default_rng(0)
    batch = jax.device_put({"inputs": rng.random((128, 28, 28, 1), dtype=np.float32),
                            "targets": rng.integers(0, 10, 128).astype(np.int32)})
    variants = {"vmap": jax.jit(jax.vmap(lambda s: step(s, batch)[0])),
                "lax.map": jax.jit(lambda states: jax.lax.map(lambda s: step(s, batch)[0], states))}
    states = {name: trainer.init(list(range(members)), (28, 28, 1)) for name in variants}
    times = {name: [] for name in variants}
    for name, fn in variants.items():
        states[name] = jax.block_until_ready(fn(states[name]))  # compile
    for _ in range(steps):
        for name, fn in variants.items():
            start = time.perf_counter()
            states[name] = jax.block_until_ready(fn(states[name]))
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def hand_epochs(x, y, members: int, rounds: int) -> tuple[float, float]:
    """Median seconds of one hand-written scan epoch (bench_fit's hand loop) for one model and for `members`
    vmapped, each member with its own order: the compute floor of the ensemble's ratio."""
    from bench_fit import WORKLOADS, hand_parts, scan_epoch

    init, loss, tx = hand_parts(WORKLOADS["seed"])
    xs, ys, scan = jax.device_put(x), jax.device_put(y), scan_epoch(loss, tx, 32)
    epoch = lambda params, opt_state, key: scan(params, opt_state, xs, ys, key)  # the data shared by members
    keys = jax.random.split(jax.random.key(0), members)
    epochs = {"one": jax.jit(epoch, donate_argnums=(0, 1)), "many": jax.jit(jax.vmap(epoch), donate_argnums=(0, 1))}
    one, many = init(keys[0]), jax.vmap(init)(keys)
    box = {"one": (one, tx.init(one)), "many": (many, jax.vmap(tx.init)(many))}
    runs = {"one": lambda: epochs["one"](*box["one"], keys[0]), "many": lambda: epochs["many"](*box["many"], keys)}
    times = {k: [] for k in runs}
    for _ in range(rounds + 1):  # the first round compiles
        for k, run in runs.items():
            start = time.perf_counter()
            box[k] = jax.block_until_ready(run())
            times[k].append(time.perf_counter() - start)
    return statistics.median(times["one"][1:]), statistics.median(times["many"][1:])


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_py(config: str, *overrides: str) -> tuple[float, float]:
    """(wall seconds of the whole process, results.json's train_seconds) of one `train.py --config config` run."""
    with tempfile.TemporaryDirectory(prefix="jaxnn-bench-ensemble-") as tmp:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "train.py", "--config", config, "--workdir", tmp + "/run",
                               *overrides], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode:
            sys.exit(f"train.py --config {config} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(os.path.join(tmp, "run", "results.json")) as f:
            return wall, json.load(f)["train_seconds"]


def train_py_ratios(rounds: int, members: int) -> None:
    """Prints the whole-process and in-fit ratios of train.py's ensemble config (`members` seeds) to the seed
    config's."""
    commands = {"one": ("configs/fashion_mnist_seed.py",),
                "members": ("configs/fashion_mnist_seed_ensemble.py", f"--config.sweep.seeds={members}")}
    for command in commands.values():
        train_py(*command)  # warm-up: fills the array cache and the compilation cache
    runs = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            runs[name].append(train_py(*command))
    print(f"\n## train.py, the seed config against its {members}-member ensemble config, {rounds} rounds "
          f"(fresh processes)")
    for i, what in enumerate(("whole process", "train_seconds (inside fit)")):
        one, many = ([r[i] for r in runs[name]] for name in commands)
        print(f"{what:27s} one {statistics.median(one):5.1f} s  {members} members {statistics.median(many):5.1f} s  "
              f"ratio {statistics.median(many) / statistics.median(one):.2f}  (rounds: "
              f"{', '.join(f'{o:.1f}/{m:.1f}' for o, m in zip(one, many))})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conv-steps", type=int, default=20)
    parser.add_argument("--train-py-rounds", type=int, default=3, help="0: skip the train.py comparison")
    parser.add_argument("--data", help="read the arrays from this --save-data file instead of TFDS")
    parser.add_argument("--save-data", help="write the arrays to this .npz and exit")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.save_data:
        return save_arrays(args.save_data)
    (x, y), (x_test, y_test) = (load_arrays(args.data) if args.data
                                else load_splits("fashion_mnist", ["train", "test"]))
    seeds = list(range(args.members))
    fit(0, x, y, 1), fit(seeds, x, y, 1)  # compile both
    one, many = [], []
    for _ in range(args.rounds):
        one.append(fit(0, x, y, args.epochs)[0])
        seconds, trainer, state, history = fit(seeds, x, y, args.epochs)
        many.append(seconds)
    print(f"\n## vmap ensemble: {args.members} seed models (784-100 sigmoid-10, RMSprop, batch 32), "
          f"{args.epochs} epochs, {args.rounds} rounds")
    print(f"one model   median {statistics.median(one):6.1f} s  (rounds: {', '.join(f'{t:.1f}' for t in one)})")
    print(f"{args.members} members  median {statistics.median(many):6.1f} s  "
          f"(rounds: {', '.join(f'{t:.1f}' for t in many)})")
    print(f"ratio {args.members} members / one: {statistics.median(many) / statistics.median(one):.2f}  "
          f"(median of the rounds' own ratios: {statistics.median(m / o for m, o in zip(many, one)):.2f})")
    hand_one, hand_many = hand_epochs(x[:48000], y[:48000], args.members, args.rounds)
    print(f"hand-written scan epoch (48,000 examples): one {hand_one:.2f} s, {args.members} vmapped {hand_many:.2f} s "
          f"(ratio {hand_many / hand_one:.2f}: the floor of the ratio above on this machine)")

    diffs, accs = [], []
    probs = trainer.predict(state, x_test, batch_size=1000)
    for m, seed in enumerate(seeds):
        alone = fit(seed, x, y, args.epochs)[3]
        diffs.append(largest_difference(alone.history, history.members[m].history))
        accs.append(float(np.mean(probs[m].argmax(-1) == y_test)))
    ensemble = float(np.mean(probs.mean(0).argmax(-1) == y_test))
    print(f"each member's History against the member alone: largest difference {max(diffs):.3g} "
          f"(per member: {', '.join(f'{d:.2g}' for d in diffs)})")
    print(f"member test accuracies: {', '.join(f'{a:.4f}' for a in accs)}  (best {max(accs):.4f})")
    print(f"ensemble test accuracy (mean of the members' probabilities): {ensemble:.4f}  "
          f"({'above' if ensemble > max(accs) else 'NOT above'} the best member by {ensemble - max(accs):+.4f})")

    conv = conv_members(4, args.conv_steps)
    print(f"CNN train step of 4 members: vmap {conv['vmap'] * 1e3:.0f} ms, lax.map {conv['lax.map'] * 1e3:.0f} ms "
          f"(vmap / lax.map {conv['vmap'] / conv['lax.map']:.2f})")
    if args.train_py_rounds:
        train_py_ratios(args.train_py_rounds, args.members)


if __name__ == "__main__":
    main()
