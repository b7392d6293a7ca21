"""Batch, stochastic and mini-batch gradient descent on a Fashion-MNIST subset: loss and time per epoch.

    python bench/gd_variants.py [--epochs 5] [--batch-sizes 6000,1,32]

Everything comes from configs/gd_variants.py (6,000 training images, MLP
784-128-10, plain SGD at lr 0.05) through the normal Trainer; only
`train.batch_size` changes: the training set size is batch gradient descent
(one update per epoch), 1 is stochastic (one update per example), 32 is
mini-batch. Each variant starts from the same initial parameters. Reported:
updates per epoch, the loss on the whole training set and the test accuracy
after the same number of epochs, and the median wall time of an epoch after
the first (the first includes compilation, shown apart).
"""
from __future__ import annotations

import argparse
import importlib.util
import pathlib
import statistics
import time

import jax

from jaxnn import data
from jaxnn.config import build
from jaxnn.tasks.classify import build_trainer
from jaxnn.training.callbacks import LambdaCallback

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config():
    spec = importlib.util.spec_from_file_location("gd_variants", ROOT / "configs" / "gd_variants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def run_variant(config, batch_size: int, epochs: int, train_arrays, test_arrays) -> dict:
    """Train one variant from the config's seed; its losses, accuracy and epoch times."""
    with config.unlocked():
        config.train.batch_size = batch_size
        config.train.epochs = epochs
    (x, y), (x_test, y_test) = train_arrays, test_arrays
    steps = len(y) // batch_size
    trainer = build_trainer(build(config), total_steps=steps * epochs)
    state = trainer.init(jax.random.key(config.seed), x.shape[1:])
    started, times = {}, []
    timer = LambdaCallback(on_epoch_begin=lambda run, epoch: started.update(t=time.perf_counter()),
                           on_epoch_end=lambda run, epoch, logs: times.append(time.perf_counter() - started["t"]))
    state, _ = trainer.fit(state, x, y, epochs=epochs, batch_size=batch_size, shuffle=True, callbacks=[timer],
                           verbose=0)
    train = trainer.evaluate(state, x, y, batch_size=1000)
    test = trainer.evaluate(state, x_test, y_test, batch_size=1000)
    return {"updates_per_epoch": steps, "train_loss": train["loss"], "test_accuracy": test["accuracy"],
            "first_epoch_s": times[0], "epoch_s": statistics.median(times[1:]) if len(times) > 1 else times[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-sizes", default=None, help="comma-separated; default: training set size, 1, 32")
    args = parser.parse_args()
    config = load_config()
    ds = config.dataset
    train_arrays = data.load_arrays(ds.name, ds.train_split, data_dir=ds.data_dir)
    test_arrays = data.load_arrays(ds.name, ds.test_split, data_dir=ds.data_dir)
    n = len(train_arrays[1])
    sizes = [int(s) for s in args.batch_sizes.split(",")] if args.batch_sizes else [n, 1, 32]
    names = {n: "batch", 1: "stochastic"}
    print(f"{n} training images, {len(test_arrays[1])} test, {args.epochs} epochs, "
          f"SGD lr {config.optimizer.learning_rate}, {jax.devices()[0].platform}")
    print(f"{'variant':<11} {'batch':>6} {'updates/epoch':>13} {'train loss':>10} {'test acc':>8} "
          f"{'s/epoch':>8} {'1st epoch s':>11}")
    for size in sizes:
        r = run_variant(load_config(), size, args.epochs, train_arrays, test_arrays)
        print(f"{names.get(size, 'mini-batch'):<11} {size:>6} {r['updates_per_epoch']:>13} {r['train_loss']:>10.4f} "
              f"{r['test_accuracy']:>8.4f} {r['epoch_s']:>8.3f} {r['first_epoch_s']:>11.3f}")


if __name__ == "__main__":
    main()
