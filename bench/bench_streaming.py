"""The streaming path against the in-memory path: examples/s of `Trainer.fit` on the Fashion-MNIST CNN, and
random-access read rates of the sources a stream can read from.

    python bench/bench_streaming.py [--rounds 5] [--examples 60000] [--epochs 1]

fit: the model of configs/fashion_mnist_cnn.py, batches of 128, Adam; "in_memory" is the split whole on the
device (`fit(state, x, y)`), "streaming" the same split memory-mapped from the array cache
(`fit(state, data.image_source(...))`, read and placed in a background thread). After one warm-up fit of
each (compiling), the two alternate `--rounds` times, so machine noise hits both alike; printed: the median
examples/s of each and streaming / in_memory. Both fits take `--steps_per_dispatch` (default 1: streaming
runs one dispatch per step whatever it is).

reads: batches of 128 random example ids read on the host, as a stream reads them: the memory-mapped array
cache (`ArraySource`), and the same examples as raw bytes in an ArrayRecord file (`ArrayRecordDataSource`,
what `tfds.data_source` and grain read from, without TFDS's per-example feature decoding).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import tempfile
import time

import jax
import numpy as np

from jaxnn import data
from jaxnn.config import build
from jaxnn.data.streaming import RecordSource
from jaxnn.tasks.classify import build_trainer
from jaxnn.training.trainer import Trainer

BATCH = 128
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "fashion_mnist_cnn.py")


def cnn_trainer() -> tuple[Trainer, dict]:
    """The Trainer of configs/fashion_mnist_cnn.py and its dataset section."""
    spec = importlib.util.spec_from_file_location("fashion_mnist_cnn", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    experiment = build(module.get_config())
    return build_trainer(experiment, total_steps=10**6), experiment.dataset


def fit_runner(trainer: Trainer, args, epochs: int, steps_per_dispatch):
    box = {"state": trainer.init(0, (28, 28, 1))}

    def run():
        start = time.perf_counter()
        box["state"], _ = trainer.fit(box["state"], *args, epochs=epochs, batch_size=BATCH, verbose=0,
                                         steps_per_dispatch=steps_per_dispatch)
        jax.block_until_ready(box["state"].params)
        return time.perf_counter() - start

    return run


def read_rates(source_arrays: dict, reads: int) -> dict[str, float]:
    """Examples/s of random batch reads: the memory map against an ArrayRecord file of the same bytes."""
    from array_record.python.array_record_data_source import ArrayRecordDataSource
    from array_record.python.array_record_module import ArrayRecordWriter

    images, labels = source_arrays["images"], source_arrays["labels"]
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(images), BATCH) for _ in range(reads)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.array_record")
        writer = ArrayRecordWriter(path, "group_size:1")
        for image, label in zip(images, labels):
            writer.write(np.asarray(image).tobytes() + np.int32(label).tobytes())
        writer.close()
        shape = images.shape[1:]
        record = lambda raw: {"images": np.frombuffer(raw[:-4], np.uint8).reshape(shape),
                              "labels": np.frombuffer(raw[-4:], np.int32)[0]}
        sources = {"array_cache_mmap": data.ArraySource(source_arrays),
                   "array_record": RecordSource(ArrayRecordDataSource([path]), record)}
        rates = {}
        for name, source in sources.items():
            start = time.perf_counter()
            for ids in batches:
                source.read(ids)
            rates[name] = reads * BATCH / (time.perf_counter() - start)
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--examples", type=int, default=60_000, help="the first N examples of the train split")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed fit")
    parser.add_argument("--reads", type=int, default=200, help="random batches read per source")
    parser.add_argument("--steps_per_dispatch", default="1", help='fit\'s steps_per_dispatch, or "auto"')
    args = parser.parse_args()
    trainer, dataset = cnn_trainer()
    split = f"train[:{args.examples}]"
    x, y = data.load_arrays(dataset["name"], split, data_dir=dataset.get("data_dir"))
    source = data.image_source(dataset["name"], split, data_dir=dataset.get("data_dir"))
    k = args.steps_per_dispatch if args.steps_per_dispatch == "auto" else int(args.steps_per_dispatch)
    runners = {"in_memory": fit_runner(trainer, (x, y), args.epochs, k),
               "streaming": fit_runner(trainer, (source,), args.epochs, k)}
    for run in runners.values():  # compile
        run()
    seconds = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            seconds[name].append(run())
    examples = (len(x) // BATCH) * BATCH * args.epochs
    rate = {name: examples / statistics.median(times) for name, times in seconds.items()}
    print(f"fit, Fashion-MNIST CNN, {examples} examples per fit, median of {args.rounds} interleaved rounds "
          f"({jax.devices()[0].platform}):")
    for name, value in rate.items():
        print(f"  {name:10s} {value:9.0f} examples/s   (seconds: {', '.join(f'{t:.2f}' for t in seconds[name])})")
    print(f"  streaming / in_memory: {rate['streaming'] / rate['in_memory']:.3f}")
    print(f"reads, {args.reads} random batches of {BATCH}:")
    for name, value in read_rates(source.arrays, args.reads).items():
        print(f"  {name:16s} {value:10.0f} examples/s")


if __name__ == "__main__":
    main()
