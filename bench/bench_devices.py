"""`Trainer.fit` on 1, 2, 4 and 8 devices, data parallel and FSDP: examples/s and the ratio to one device.

    python bench/bench_devices.py [--devices 1,2,4,8] [--layouts data,fsdp] [--steps 300] [--rounds 5]

The seed config's workload (configs/fashion_mnist_seed.py: Dense(100, sigmoid) -> Dense(10, softmax),
RMSprop, global batch 32) on random data of Fashion-MNIST's shapes, so no dataset is read. Without an
accelerator the devices are simulated on the CPU (XLA_FLAGS=--xla_force_host_platform_device_count, set
here before JAX starts): they share its cores, so the table shows the framework's overhead per device
count, not a speed-up. Each round is one epoch of `--steps` steps after a warm-up fit (compiled once per
layout); the layouts alternate within a round so that machine noise hits all alike.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4,8", help="comma-separated device counts")
    parser.add_argument("--layouts", default="data,fsdp", help="mesh axes to spread the devices over")
    parser.add_argument("--steps", type=int, default=300, help="steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs per layout (the median is shown)")
    parser.add_argument("--min_shard_bytes", type=int, default=0, help="FSDP threshold (0: shard every leaf that "
                        "divides, so the seed model's small kernels shard too)")
    args = parser.parse_args(argv)
    args.devices = [int(n) for n in args.devices.split(",")]
    args.layouts = args.layouts.split(",")
    return args


def main(argv=None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={max(args.devices)}")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import importlib.util

    import jax
    import numpy as np

    from jaxnn import distributed
    from jaxnn.config import build
    from jaxnn.tasks.classify import build_trainer

    spec = importlib.util.spec_from_file_location("seed", os.path.join(sys.path[0], "configs", "fashion_mnist_seed.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    experiment = build(module.get_config())
    batch_size = experiment.train["batch_size"]
    rng = np.random.default_rng(0)
    x = rng.random((args.steps * batch_size, *experiment.data_spec.input_shape), dtype=np.float32)
    y = rng.integers(0, experiment.data_spec.num_classes, len(x)).astype(np.int32)

    runs = {}
    for devices in args.devices:
        for layout in args.layouts if devices > 1 else args.layouts[:1]:
            mesh = distributed.make_mesh({layout: devices})
            trainer = dataclasses.replace(build_trainer(experiment, args.steps), mesh=mesh,
                                          min_shard_bytes=args.min_shard_bytes)
            state = trainer.init(0, x.shape[1:])
            state, _ = trainer.fit(state, x, y, epochs=1, batch_size=batch_size, verbose=0)  # compiles
            runs[(layout if devices > 1 else "one", devices)] = [trainer, state, []]
    for _ in range(args.rounds):
        for run in runs.values():
            trainer, state, times = run
            started = time.perf_counter()
            state, _ = trainer.fit(state, x, y, epochs=1, batch_size=batch_size, verbose=0)
            jax.block_until_ready(state)
            times.append(time.perf_counter() - started)
            run[1] = state
    base = len(x) / statistics.median(next(iter(runs.values()))[2])
    print(f"{'layout':8}{'devices':>8}{'examples/s':>14}{'vs 1 device':>13}")
    for (layout, devices), (_, _, times) in runs.items():
        rate = len(x) / statistics.median(times)
        print(f"{layout:8}{devices:>8}{rate:>14,.0f}{rate / base:>13.2f}")


if __name__ == "__main__":
    main()
