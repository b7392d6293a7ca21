"""Every kind of experiment is a task, picked by a config's `task` field (default "classify").

    python train.py --config configs/fashion_mnist_mlp.py --workdir runs/mlp         # task = "classify"
    python train.py --config configs/perceptron_and.py --workdir runs/and     # task = "perceptron"
    python train.py --config configs/xor_mlp.py --workdir runs/xor            # task = "perceptron_vs_mlp"
    python train.py --config configs/fashion_mnist_transfer.py --workdir runs/transfer   # task = "transfer"
    python train.py --config configs/fashion_mnist_gan.py --workdir runs/gan             # task = "gan"

A task is `fn(config, workdir, *, print_fn=print) -> (results, history)`: it
checks its whole config before it reads data or writes a file (a bad field stops
it with one line naming the field, the value and what is allowed), writes its own
files (checkpoints, curves, samples) and returns the results dict and its History
(one per phase, or None); `jaxnn.runner.run` writes results.json, config.json and
history.json from them. Each task's pure pieces sit beside it: `gan_model`,
`perceptron_rule`, `transfer_weights`.
"""
from jaxnn.tasks.common import TASKS
from jaxnn.tasks.classify import classify_task
from jaxnn.tasks.gan import GANExperiment, build_gan, gan_task, load_gan
from jaxnn.tasks.perceptron import perceptron_task, perceptron_vs_mlp
from jaxnn.tasks.transfer import transfer_models, transfer_task

__all__ = ["TASKS", "GANExperiment", "build_gan", "classify_task", "gan_task", "load_gan", "perceptron_task",
           "perceptron_vs_mlp", "transfer_models", "transfer_task"]
