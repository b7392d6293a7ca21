"""Cost of per-example gradients: the DP-SGD step (clipped + noised) and the norm-quantiles step against the plain step.

    python bench/bench_per_example.py [--rounds 7] [--steps 200]

Two workloads: the seed MLP 784-100 sigmoid-10 with RMSprop at batch 32, and
the 784-512-512-10 relu MLP with Adam at batch 128. For each, jitted train
steps of the same Trainer settings (plain; `per_example=dict(quantiles=True)`;
`per_example=dict(clip_norm=1, noise_multiplier=1.1)`, also in micro-batches of 4
examples through `accumulate_steps`) each run `--steps` steps on
batches already on the device; the variants alternate within each round so that
machine noise hits all alike. Prints the median step time per variant and its
ratio to the plain step.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import jaxnn
from jaxnn import Dense, Flatten, Sequential, Trainer

WORKLOADS = {
    "seed 784-100-10 rmsprop b32": dict(hidden=(100,), activation="sigmoid", optimizer=("rmsprop", dict(epsilon=1e-7)),
                                        batch=32),
    "784-512-512-10 adam b128": dict(hidden=(512, 512), activation="relu", optimizer=("adam", {}), batch=128),
}
DP_SGD = dict(clip_norm=1.0, noise_multiplier=1.1)
# name -> (per_example, examples per micro-batch or None): "dp_sgd_chunk4" runs the same DP-SGD step with
# accumulate_steps = batch / 4, so that only 4 examples' gradients are alive at once.
VARIANTS = {"plain": (None, None), "quantiles": (dict(quantiles=True), None), "dp_sgd": (DP_SGD, None),
            "dp_sgd_chunk4": (DP_SGD, 4)}


def step_runner(workload: dict, per_example, chunk: int | None, steps: int):
    """A function that runs `steps` train steps and waits for them; compiled and warmed up here."""
    model = Sequential([Flatten(), *(Dense(u, workload["activation"]) for u in workload["hidden"]), Dense(10)])
    name, options = workload["optimizer"]
    trainer = Trainer(model, loss=jaxnn.losses.get("sparse_categorical_crossentropy", from_logits=True),
                      optimizer=jaxnn.optimizers.get(name, learning_rate=1e-3, **options), metrics=("accuracy",),
                      per_example=per_example, accumulate_steps=workload["batch"] // chunk if chunk else 1)
    rng = np.random.default_rng(0)
    batches = [jax.device_put({"inputs": rng.random((workload["batch"], 28, 28, 1), dtype=np.float32),
                               "targets": rng.integers(0, 10, workload["batch"]).astype(np.int32)}) for _ in range(8)]
    box = {"state": trainer.init(0, (28, 28, 1))}

    def run():
        state = box["state"]
        for i in range(steps):
            state, stats = trainer.train_step(state, batches[i % len(batches)])
        jax.block_until_ready((state, stats))
        box["state"] = state

    run()
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"device: {jax.devices()[0].platform} x{jax.device_count()}  steps per timing: {args.steps}  "
          f"rounds: {args.rounds}")
    for label, workload in WORKLOADS.items():
        runners = {name: step_runner(workload, *variant, args.steps) for name, variant in VARIANTS.items()}
        times = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) / args.steps)
        medians = {name: statistics.median(t) for name, t in times.items()}
        print(f"\n{label}")
        for name, median in medians.items():
            print(f"  {name:10s} median {median * 1e3:8.3f} ms/step   ratio to plain {median / medians['plain']:6.2f}x"
                  f"   (rounds: {', '.join(f'{t * 1e3:.3f}' for t in times[name])})")


if __name__ == "__main__":
    main()
