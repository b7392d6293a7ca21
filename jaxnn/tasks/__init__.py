"""Experiments other than `run`'s image classification, picked by a config's `task` field.

    python train.py --config configs/perceptron_and.py --workdir runs/and     # task = "perceptron"
    python train.py --config configs/xor_mlp.py --workdir runs/xor            # task = "perceptron_vs_mlp"
    python train.py --config configs/fashion_mnist_transfer.py --workdir runs/transfer   # task = "transfer"
    python train.py --config configs/fashion_mnist_gan.py --workdir runs/gan             # task = "gan"

A task is `fn(config, workdir, *, print_fn=print) -> results dict`. Like `run`,
each one checks its whole config before it reads data or writes a file, a bad
field stopping it with one line naming the field, the value and what is
allowed; at the end it writes `results.json` and `config.json` into the workdir.
"""
from jaxnn.tasks.common import TASKS
from jaxnn.tasks.gan import GANExperiment, build_gan, gan_task, load_gan
from jaxnn.tasks.perceptron import perceptron_task, perceptron_vs_mlp
from jaxnn.tasks.transfer import transfer_models, transfer_task

__all__ = ["TASKS", "GANExperiment", "build_gan", "gan_task", "load_gan", "perceptron_task", "perceptron_vs_mlp",
           "transfer_models", "transfer_task"]
