"""Cost of checkpoints on the seed config (configs/fashion_mnist_seed.py): per save, and as a fraction of training.

    python bench/bench_checkpoint_save.py saves [--saves 20]
    python bench/bench_checkpoint_save.py fraction [--runs 5] [--epochs 5] [--train_split train]

"saves": `CheckpointManager.save` of the seed config's epoch-end checkpoint (its TrainState with RMSprop's
moments, the running totals, the callbacks' state): the training thread's blocked time per save (fingerprints
and finiteness on the device, the copy off the device, orbax's start) and the wall time until the save is
committed (orbax's background write, then meta.json), medians over `--saves` saves.

"fraction": the seed config's fit (default checkpoint settings: a checkpoint at each epoch end, keep 3)
with and without its ModelCheckpoint, `--runs` pairs from the same initial state (which goes first
alternates); prints each pair's ratio, the median ratio minus 1 (the checkpoints' cost as a fraction of
training time) with the quartiles of the ratios, and the training thread's total time blocked in saves per
run. A fit lasts about 1.5 s here and the machine's slow episodes move single fits by 10-50%: use 21 runs
or more. The data are loaded once, before any timing.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import jax

from jaxnn import checkpoint as ckpt, data
from jaxnn.config import build, fingerprint
from jaxnn.tasks.classify import build_trainer
from jaxnn.training.checkpointing import ModelCheckpoint
from jaxnn.training.trainer import split_sizes

CONFIG = "configs/fashion_mnist_seed.py"


def seed_config(epochs: int, train_split: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("seed_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.train.epochs, config.dataset.train_split = epochs, train_split
    config.train.tensorboard = False
    return config


def setting(epochs: int, train_split: str):
    """(config, experiment, trainer, initial state, training arrays) of the seed config."""
    config = seed_config(epochs, train_split)
    experiment = build(config)
    ds = experiment.dataset
    (x, y), = data.load_splits(ds["name"], (ds["train_split"],), data_dir=ds.get("data_dir"),
                               **data.dataset_options(ds))
    train = experiment.train
    steps = split_sizes(x.shape[0], train["validation_split"])[0] // train["batch_size"]
    trainer = build_trainer(experiment, steps * train["epochs"])
    return config, experiment, trainer, trainer.init(jax.random.key(experiment.seed), x.shape[1:]), (x, y)


class Timed(ModelCheckpoint):
    """ModelCheckpoint that adds up the training thread's time inside `save` and the final wait."""

    blocked = 0.0

    def save(self, run, metric=None):
        start = time.perf_counter()
        try:
            return super().save(run, metric)
        finally:
            self.blocked += time.perf_counter() - start

    def on_train_end(self, run):
        start = time.perf_counter()
        super().on_train_end(run)
        self.blocked += time.perf_counter() - start


def fit_seconds(config, experiment, trainer, state, xy, checkpoints: bool) -> tuple[float, float]:
    """(wall seconds of one fit, seconds the training thread was blocked in checkpointing)."""
    train, ckpt_cfg = experiment.train, experiment.checkpoint
    callbacks = []
    if checkpoints:
        callbacks.append(Timed(tempfile.mkdtemp(prefix="bench-ckpt-"), monitor=ckpt_cfg["monitor"],
                               every_steps=ckpt_cfg["every_steps"], keep=ckpt_cfg["keep"],
                               fingerprint=fingerprint(config), print_fn=None))
    start = time.perf_counter()
    out, _ = trainer.fit(jax.tree_util.tree_map(jax.numpy.copy, state), *xy,  # fit donates the state it is given
                         epochs=train["epochs"], batch_size=train["batch_size"],
                         validation_split=train["validation_split"], shuffle=train["shuffle"], callbacks=callbacks,
                         verbose=0, log_every_steps=train["log_every_steps"])
    jax.block_until_ready(out.params)
    wall = time.perf_counter() - start
    if callbacks:
        callbacks[0].close()
    return wall, callbacks[0].blocked if callbacks else 0.0


def fraction(args) -> None:
    config, experiment, trainer, state, xy = setting(args.epochs, args.train_split)
    fit_seconds(config, experiment, trainer, state, xy, True)  # compile both paths before timing
    ratios = []
    for run in range(args.runs):
        if run % 2:  # alternate which goes first, so a drift within a pair favours neither
            with_ckpt, blocked = fit_seconds(config, experiment, trainer, state, xy, True)
            bare, _ = fit_seconds(config, experiment, trainer, state, xy, False)
        else:
            bare, _ = fit_seconds(config, experiment, trainer, state, xy, False)
            with_ckpt, blocked = fit_seconds(config, experiment, trainer, state, xy, True)
        ratios.append(with_ckpt / bare)
        print(f"run {run + 1}: without {bare:.2f} s, with checkpoints {with_ckpt:.2f} s (ratio {ratios[-1]:.3f}); "
              f"blocked in saves {1e3 * blocked:.0f} ms ({100 * blocked / with_ckpt:.2f}% of the fit)")
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    print(f"checkpoint cost at default settings: {100 * (statistics.median(ratios) - 1):+.2f}% of training time "
          f"(median of {args.runs} runs, {args.epochs} epochs, split {args.train_split}; quartiles "
          f"{100 * (quartiles[0] - 1):+.1f}% .. {100 * (quartiles[2] - 1):+.1f}%)")


def saves(args) -> None:
    _, _, _, state, _ = setting(1, "train[:1%]")
    zero = jax.numpy.float32(0)
    totals = {name: {"total": zero, "count": zero} for name in ("loss", "accuracy")}  # as the fit's running totals
    tree = {"callbacks": {}, "state": state, "totals": totals}
    manager = ckpt.CheckpointManager(tempfile.mkdtemp(prefix="bench-ckpt-"), keep=3)
    manager.save(0, tree)  # compiles the fingerprints
    manager.wait()
    blocked, committed = [], []
    for step in range(1, args.saves + 1):
        start = time.perf_counter()
        manager.save(step, tree, {"epoch": step})
        blocked.append(time.perf_counter() - start)
        manager.wait()
        committed.append(time.perf_counter() - start)
    manager.close()
    size = sum(a.nbytes for a in ckpt.leaves(tree).values())
    print(f"seed config state: {size / 1e6:.2f} MB in {len(ckpt.leaves(tree))} arrays; {args.saves} saves")
    print(f"training thread blocked {1e3 * statistics.median(blocked):.1f} ms per save (median), "
          f"committed after {1e3 * statistics.median(committed):.1f} ms (median)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("saves", "fraction"))
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train_split", default="train")
    args = parser.parse_args()
    saves(args) if args.what == "saves" else fraction(args)


if __name__ == "__main__":
    main()
