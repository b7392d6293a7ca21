"""jaxnn `Trainer.fit` against hand-written loops: examples/s, their ratios, compile time, fused = per-step.

    python bench/bench_fit.py [--rounds 5] [--epochs 1] [--workloads seed,wide]

Two workloads on Fashion-MNIST-shaped data (60,000 examples): the seed notes'
MLP 784-100 sigmoid-10 with RMSprop at batch 32 ("seed", overhead-bound) and
784-512-512-10 relu with Adam at batch 128 ("wide", compute-bound). For each:

    hand_plain   a `jax.jit` train step + optax, numpy batches sliced on the host
    hand_scan    the whole epoch as one `lax.scan` over data kept on the device
    hand_scan_keras  hand_scan with fit's Keras-form loss (softmax outputs, clipped log) instead of the
                 logits' cross-entropy: what is left of fit's gap to hand_scan is framework
    fit_k1       `Trainer.fit(steps_per_dispatch=1)`: one step per dispatch
    fit_auto     `Trainer.fit(steps_per_dispatch="auto")`: fused chunks of ~0.1 s

fit and hand_scan get the data placed on the device once, before the timings.
Each timing is `--epochs` epochs after a warm-up; the four alternate within each
round so that machine noise hits all alike; medians over `--rounds`, and the median of the
rounds' own ratios (a slow episode of the machine spans a round, so it cancels in that one). Also:
the compile time of fit's first call (K=1 and auto, fresh Trainers) and whether
the K=1 and auto runs of one init give the same History and parameters bit for bit.
`--ensemble`, `--per-example` and `--startup` add the figures of `bench/bench_ensemble.py`,
`bench/bench_per_example.py` (5 rounds of 20 steps) and `bench/bench_startup.py`; `--all` all three.
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

WORKLOADS = {
    "seed": dict(hidden=(100,), activation="sigmoid", optimizer="rmsprop", batch=32,
                 title="seed MLP 784-100 sigmoid-10, RMSprop, batch 32"),
    "wide": dict(hidden=(512, 512), activation="relu", optimizer="adam", batch=128,
                 title="MLP 784-512-512-10 relu, Adam, batch 128"),
}
LR = 1e-3


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n).astype(np.int32)


def keras_optimizer(name: str) -> optax.GradientTransformation:
    """The optimizer with Keras's defaults, as jaxnn builds it by name (RMSprop: rho 0.9, eps 1e-7)."""
    return jaxnn.optimizers.get(name, learning_rate=LR)


def make_trainer(w: dict) -> Trainer:
    model = Sequential([Flatten(), *(Dense(u, w["activation"]) for u in w["hidden"]), Dense(10, "softmax")])
    return Trainer(model, loss="sparse_categorical_crossentropy", optimizer=keras_optimizer(w["optimizer"]),
                   metrics=("accuracy",))


def fit_runner(w: dict, x, y, epochs: int, k):
    """fit on data placed on the device once, as hand_scan's (fit takes placed arrays without a copy)."""
    trainer = make_trainer(w)
    box = {"state": trainer.init(0, x.shape[1:])}
    x, y = jax.device_put(x), jax.device_put(y)

    def run():
        box["state"], box["history"] = trainer.fit(box["state"], x, y, epochs=epochs, batch_size=w["batch"],
                                                   verbose=0, steps_per_dispatch=k)
        jax.block_until_ready(box["state"].params)

    return run


def hand_parts(w: dict, keras_loss: bool = False):
    """init, per-batch loss and optimizer of the hand-written loops: fit's model; the loss from its logits,
    or (`keras_loss`) fit's own Keras form on the softmax outputs (normalized, clipped, log)."""
    sizes = [784, *w["hidden"], 10]
    act = getattr(jax.nn, w["activation"])
    sparse_ce = jaxnn.losses.get("sparse_categorical_crossentropy")

    def init(key):
        keys = jax.random.split(key, len(sizes) - 1)
        glorot = jax.nn.initializers.glorot_uniform()
        return [{"w": glorot(k, (a, b)), "b": jnp.zeros(b)} for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def loss(params, xb, yb):
        h = xb.reshape(xb.shape[0], -1)
        for layer in params[:-1]:
            h = act(h @ layer["w"] + layer["b"])
        logits = h @ params[-1]["w"] + params[-1]["b"]
        if keras_loss:
            return sparse_ce(yb, jax.nn.softmax(logits)).mean()
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    return init, loss, keras_optimizer(w["optimizer"])


def hand_plain_runner(w: dict, x, y, epochs: int):
    """The usual hand-written loop: one jitted step + optax, batches cut from numpy on the host."""
    init, loss, tx = hand_parts(w)

    @jax.jit
    def step(params, opt_state, xb, yb):
        grads = jax.grad(loss)(params, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params = init(jax.random.key(0))
    box = {"params": params, "opt_state": tx.init(params)}
    rng, b = np.random.default_rng(1), w["batch"]

    def run():
        for _ in range(epochs):
            perm = rng.permutation(len(x))
            for i in range(len(x) // b):
                idx = perm[i * b:(i + 1) * b]
                box["params"], box["opt_state"] = step(box["params"], box["opt_state"], x[idx], y[idx])
        jax.block_until_ready(box["params"])

    return run


def scan_epoch(loss, tx, batch: int):
    """The pure epoch of the scan loop: `(params, opt_state, xs, ys, key) -> (params, opt_state)`, the batches
    cut on the device from a permutation drawn from `key`."""
    def epoch(params, opt_state, xs, ys, key):
        steps = xs.shape[0] // batch
        perm = jax.random.permutation(key, xs.shape[0])[:steps * batch].reshape(steps, batch)

        def one(carry, idx):
            params, opt_state = carry
            grads = jax.grad(loss)(params, xs[idx], ys[idx])
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(one, (params, opt_state), perm)[0]

    return epoch


def hand_scan_runner(w: dict, x, y, epochs: int, keras_loss: bool = False):
    """The fastest hand loop we know: each epoch one `lax.scan` over the batches, data on the device."""
    init, loss, tx = hand_parts(w, keras_loss)
    epoch = jax.jit(scan_epoch(loss, tx, w["batch"]))
    xs, ys = jax.device_put(x), jax.device_put(y)
    params = init(jax.random.key(0))
    box = {"params": params, "opt_state": tx.init(params), "epoch": 0}

    def run():
        for _ in range(epochs):
            box["params"], box["opt_state"] = epoch(box["params"], box["opt_state"], xs, ys,
                                                    jax.random.key(box["epoch"]))
            box["epoch"] += 1
        jax.block_until_ready(box["params"])

    return run


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def compile_seconds(w: dict, x, y, k) -> float:
    """Fit's first call on a fresh Trainer (tracing and compiling included) minus a warm call's time."""
    run = fit_runner(w, x, y, 1, k)
    first = seconds(run)
    return first - seconds(run)


def same_runs(w: dict, x, y) -> str:
    """Whether fit with K=1 and with auto, from one init, give the same History and state bit for bit."""
    results = []
    for k in (1, "auto"):
        trainer = make_trainer(w)
        state, history = trainer.fit(trainer.init(0, x.shape[1:]), x, y, epochs=2, batch_size=w["batch"],
                                     verbose=0, steps_per_dispatch=k)
        results.append((history.history, jax.tree_util.tree_leaves((state.params, state.opt_state))))
    (h1, s1), (h2, s2) = results
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(s1, s2))
    return f"History identical: {h1 == h2}; largest parameter/optimizer-state difference: {diff:g}"


def throughput(name: str, x, y, rounds: int, epochs: int) -> None:
    w = WORKLOADS[name]
    runners = {"hand_plain": hand_plain_runner(w, x, y, epochs), "hand_scan": hand_scan_runner(w, x, y, epochs),
               "hand_scan_keras": hand_scan_runner(w, x, y, epochs, keras_loss=True),
               "fit_k1": fit_runner(w, x, y, epochs, 1), "fit_auto": fit_runner(w, x, y, epochs, "auto")}
    for run in runners.values():
        run()  # compile and warm up
    rates = {n: [] for n in runners}
    examples = (len(x) // w["batch"]) * w["batch"] * epochs
    for _ in range(rounds):
        for n, run in runners.items():
            rates[n].append(examples / seconds(run))
    med = {n: statistics.median(r) for n, r in rates.items()}
    print(f"\n## {w['title']}  ({examples} examples a timing, {rounds} rounds)")
    for n, rate in med.items():
        print(f"{n:15s} median {rate:10,.0f} examples/s   (rounds: {', '.join(f'{r:,.0f}' for r in rates[n])})")
    for fit in ("fit_auto", "fit_k1"):
        for base in ("hand_plain", "hand_scan", "hand_scan_keras"):
            paired = statistics.median(a / b for a, b in zip(rates[fit], rates[base]))
            print(f"ratio {fit} / {base}: {med[fit] / med[base]:.3f}   (median of the rounds' own ratios: {paired:.3f})")
    print(f"compile (fit's first call minus a warm one): K=1 {compile_seconds(w, x, y, 1):.2f} s, "
          f"auto {compile_seconds(w, x, y, 'auto'):.2f} s")
    print(same_runs(w, x[:6400], y[:6400]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--examples", type=int, default=60000)
    parser.add_argument("--workloads", default="seed,wide")
    parser.add_argument("--ensemble", action="store_true", help="also the vmap-ensemble figures")
    parser.add_argument("--per-example", action="store_true", help="also the per-example gradient costs")
    parser.add_argument("--startup", action="store_true", help="also train.py's start-up split")
    parser.add_argument("--all", action="store_true", help="every figure of issue 18 in one run")
    args = parser.parse_args()
    x, y = make_data(args.examples)
    print(f"device: {jax.devices()[0].platform} x{jax.device_count()}")
    for name in args.workloads.split(","):
        throughput(name, x, y, args.rounds, args.epochs)
    if args.ensemble or args.all:
        import bench_ensemble

        bench_ensemble.main([])
    if args.per_example or args.all:
        import bench_per_example

        bench_per_example.main(["--rounds", "5", "--steps", "20"])  # the wide MLP's DP-SGD step takes ~0.3 s
    if args.startup or args.all:
        import bench_startup

        bench_startup.main([])


if __name__ == "__main__":
    main()
