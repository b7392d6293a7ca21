"""Rosenblatt's perceptron learning the AND gate; OR by override.

    python train.py --config configs/perceptron_and.py --workdir runs/perceptron_and
    python train.py --config configs/perceptron_and.py --config.dataset.name=or --workdir runs/perceptron_or

Not gradient descent: the error-correction rule of `jaxnn.tasks.perceptron_rule`, one
example at a time. results.json holds the accuracy on the truth table, the
mistakes per epoch, the first epoch without one, and the learned weights.

Measured (seed 0): accuracy 1.0 on AND and on OR.
"""
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.task = "perceptron"
    config.seed = 0
    config.dataset = dict(name="and", repeats=1)  # "and", "or" or "xor" (see configs/xor_mlp.py)
    config.train = dict(epochs=20, learning_rate=1.0, shuffle=True)
    return config
