"""The default: an MLP on Fashion-MNIST that reaches >= 0.89 test accuracy.

    python train.py --config configs/fashion_mnist_mlp.py --workdir runs/mlp
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dict(name="fashion_mnist", data_dir=config_dict.placeholder(str),
                          train_split="train", test_split="test")
    config.model = dict(name="mlp", hidden_units=(512, 256), activation="relu", dropout=0.2,
                        output_activation="softmax")
    config.loss = dict(name="sparse_categorical_crossentropy")
    config.optimizer = dict(name="adam", learning_rate=1e-3)
    config.train = dict(epochs=20, batch_size=128, validation_split=0.1, shuffle=True, metrics=("accuracy",))
    config.eval = dict(batch_size=1000)
    config.checkpoint = dict(save_final=True)
    return config
