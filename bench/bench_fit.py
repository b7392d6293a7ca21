"""jaxnn `Trainer.fit` against a hand-written jit + optax loop: examples/s and their ratio.

    python bench/bench_fit.py [--repeats 9] [--epochs 2] [--examples 60000]

Same model (MLP 784-512-512-10), batches (128, shuffled on the device each
epoch), optimizer (Adam 1e-3) and data in all. Both hand-written loops keep the
data on the device and cut batches inside their jitted step. "hand_plain" is
the usual one jit step + optax; "hand_tuned" also donates its state and sums the
same epoch loss and accuracy on the device that fit reports: the fastest loop we
know how to write that does fit's work. Each timing is `--epochs` whole epochs after a warm-up, and the
loops alternate so that machine noise hits all alike.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
from jaxnn import Dense, Flatten, Sequential, Trainer

BATCH, HIDDEN, CLASSES = 128, 512, 10


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, CLASSES, n).astype(np.int32)
    return x, y


def jaxnn_epoch_runner(x, y, epochs: int):
    trainer = Trainer(Sequential([Flatten(), Dense(HIDDEN, "relu"), Dense(HIDDEN, "relu"), Dense(CLASSES)]),
                      loss=jaxnn.losses.get("sparse_categorical_crossentropy", from_logits=True),
                      optimizer=optax.adam(1e-3), metrics=("accuracy",))
    box = {"state": trainer.init(0, x.shape[1:])}

    def run():
        box["state"], _ = trainer.fit(box["state"], x, y, epochs=epochs, batch_size=BATCH, verbose=0)
        jax.block_until_ready(box["state"].params)

    return run


def handwritten_epoch_runner(x, y, epochs: int, tuned: bool = True):
    """The hand-written loop. `tuned=False` is the plain one: a `jax.jit` step + optax, no donation,
    no running metrics (its `totals` is None, so it carries nothing)."""
    def init(key):
        sizes = [784, HIDDEN, HIDDEN, CLASSES]
        keys = jax.random.split(key, len(sizes) - 1)
        glorot = jax.nn.initializers.glorot_uniform()
        return [{"w": glorot(k, (a, b)), "b": jnp.zeros(b)} for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def forward(params, xb):
        h = xb.reshape(xb.shape[0], -1)
        for layer in params[:-1]:
            h = jax.nn.relu(h @ layer["w"] + layer["b"])
        return h @ params[-1]["w"] + params[-1]["b"]

    tx = optax.adam(1e-3)

    @jax.jit
    def permutation(key, epoch):
        return jax.random.permutation(jax.random.fold_in(key, epoch), x.shape[0])

    def step(params, opt_state, totals, xs, ys, perm, i):
        idx = jax.lax.dynamic_slice_in_dim(perm, i * BATCH, BATCH)
        xb, yb = xs[idx], ys[idx]

        def loss_fn(p):
            logits = forward(p, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        if tuned:  # the running epoch loss and accuracy that fit reports, summed on the device
            totals = {"loss": totals["loss"] + loss * BATCH,
                      "correct": totals["correct"] + jnp.sum(logits.argmax(-1) == yb)}
        return optax.apply_updates(params, updates), opt_state, totals

    # The tuned loop donates its state, as fit does: params and optimizer state are updated in place.
    step = jax.jit(step, donate_argnums=(0, 1, 2) if tuned else ())

    xs, ys = jax.device_put(x), jax.device_put(y)
    params = init(jax.random.key(0))
    box = {"params": params, "opt_state": tx.init(params), "epoch": 0}
    key = jax.random.key(1)

    def run():
        for _ in range(epochs):
            perm = permutation(key, box["epoch"])
            box["epoch"] += 1
            totals = {"loss": jnp.zeros(()), "correct": jnp.zeros((), jnp.int32)} if tuned else None
            for i in range(x.shape[0] // BATCH):
                box["params"], box["opt_state"], totals = step(box["params"], box["opt_state"], totals, xs, ys,
                                                                perm, i)
            if tuned:
                jax.device_get(totals)  # the epoch's loss and accuracy, as fit's History has them
        jax.block_until_ready(box["params"])

    return run


def time_it(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--examples", type=int, default=60000)
    args = parser.parse_args()
    x, y = make_data(args.examples)
    examples = (args.examples // BATCH) * BATCH * args.epochs
    runners = {"hand_plain": handwritten_epoch_runner(x, y, args.epochs, tuned=False),
               "hand_tuned": handwritten_epoch_runner(x, y, args.epochs, tuned=True),
               "jaxnn_fit": jaxnn_epoch_runner(x, y, args.epochs)}
    for run in runners.values():
        run()  # compile and warm up
    rates = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():
            rates[name].append(examples / time_it(run))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    print(f"device: {jax.devices()[0].platform} x{jax.device_count()}  model: MLP 784-{HIDDEN}-{HIDDEN}-{CLASSES}  "
          f"batch: {BATCH}  adam  examples/run: {examples}  repeats: {args.repeats}")
    for name, rate in medians.items():
        spread = ", ".join(f"{r:,.0f}" for r in rates[name])
        print(f"{name:12s} median {rate:10,.0f} examples/s   (runs: {spread})")
    for base in ("hand_plain", "hand_tuned"):
        print(f"ratio jaxnn_fit / {base}: {medians['jaxnn_fit'] / medians[base]:.3f}")


if __name__ == "__main__":
    main()
