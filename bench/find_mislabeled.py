"""How well the largest-gradient listing finds wrong labels: plant some in real Fashion-MNIST, train, rank.

    python bench/find_mislabeled.py [--examples 3000] [--planted 15] [--epochs 5] [--seeds 3] [--top 20]

For each seed: `--planted` training labels are changed to another class at random, the seed notes' MLP
(784-100 sigmoid-10, RMSprop, batch 32) trains for `--epochs`, then `largest_gradients` ranks the training
examples by gradient norm and by loss. Prints how many planted labels each ranking puts in its `--top`, and
their median rank (0: first).
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np

from jaxnn import Dense, Flatten, Sequential, Trainer
from jaxnn.data import load_arrays
from jaxnn.training.largest_gradients import example_losses, gradient_norms


def one_seed(x, y, planted: int, epochs: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    bad = rng.choice(len(y), planted, replace=False)
    y = y.copy()
    y[bad] = (y[bad] + rng.integers(1, 10, planted)) % 10
    trainer = Trainer(Sequential([Flatten(), Dense(100, "sigmoid"), Dense(10, "softmax")]), optimizer="rmsprop")
    state, _ = trainer.fit(trainer.init(seed, x.shape[1:]), x, y, epochs=epochs, batch_size=32, verbose=0)
    scores = {"norm": gradient_norms(trainer, state, x, y), "loss": example_losses(trainer, state, x, y)}
    return {by: np.argsort(np.argsort(-score, kind="stable"), kind="stable")[bad] for by, score in scores.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--planted", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    x, y = load_arrays("fashion_mnist", f"train[:{args.examples}]")
    print(f"{args.planted} wrong labels planted in {args.examples} examples, seed MLP, {args.epochs} epochs")
    for seed in range(args.seeds):
        ranks = one_seed(x, y, args.planted, args.epochs, seed)
        print(f"seed {seed}: " + "; ".join(
            f"by {by}: {int(np.sum(r < args.top))} of {args.planted} in the top {args.top}, median rank "
            f"{statistics.median(r.tolist()):.0f}" for by, r in ranks.items()))


if __name__ == "__main__":
    main()
