"""An LSTM reading each Fashion-MNIST image as 28 time steps of 28 pixels.

    python train.py --config configs/fashion_mnist_lstm.py --workdir runs/lstm

Measured (seed 0, 2 CPU cores): test accuracy 0.8960 after 15 epochs, 355 s.
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dict(name="fashion_mnist", data_dir=config_dict.placeholder(str),
                          train_split="train", test_split="test")
    config.model = dict(name="sequential", layers=[
        dict(type="Reshape", target_shape=(28, 28)),
        dict(type="LSTM", units=128),
        dict(type="Dense", units=10, activation="softmax"),
    ])
    config.loss = dict(name="sparse_categorical_crossentropy")
    config.optimizer = dict(name="adam", learning_rate=2e-3,
                            schedule=dict(name="warmup_cosine", warmup_steps=200))
    config.train = dict(epochs=15, batch_size=128, validation_split=0.1, shuffle=True, metrics=("accuracy",))
    config.eval = dict(batch_size=1000)
    config.checkpoint = dict(save_final=True)
    config.mesh = dict(data=1, fsdp=1, rules=(), min_shard_bytes=4 * 2**20)  # many devices: docs/distributed.md
    config.distributed = dict(initialization_timeout_s=300.0, heartbeat_timeout_s=30.0, watchdog_s=600.0)
    config.sweep = dict(seeds=1, learning_rate=())  # several models at once: docs/configs.md "Sweeps"
    return config
