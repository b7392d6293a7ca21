"""Exactly the seed notes' Fashion-MNIST model (seed 001): Dense(100, sigmoid) -> Dense(10, softmax),
Keras's default RMSprop, 20% validation split, 5 epochs, batch size 32.

    python train.py --config configs/fashion_mnist_seed.py --workdir runs/seed
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dict(name="fashion_mnist", data_dir=config_dict.placeholder(str),
                          train_split="train", test_split="test")
    config.model = dict(name="sequential", layers=[
        dict(type="Flatten"),
        dict(type="Dense", units=100, activation="sigmoid"),
        dict(type="Dense", units=10, activation="softmax"),
    ])
    config.loss = dict(name="sparse_categorical_crossentropy")
    config.optimizer = dict(name="rmsprop")  # Keras defaults: lr 1e-3, rho 0.9, eps 1e-7
    config.train = dict(epochs=5, batch_size=32, validation_split=0.2, shuffle=True, metrics=("accuracy",))
    config.eval = dict(batch_size=1000)
    config.checkpoint = dict(save_final=True)
    return config
