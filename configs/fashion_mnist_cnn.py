"""Two conv + pooling blocks on Fashion-MNIST (the "2 Conv+pooling" row of Fashion-MNIST's benchmark: 0.916).

    python train.py --config configs/fashion_mnist_cnn.py --workdir runs/cnn

Measured (seed 0, 2 CPU cores): test accuracy 0.9208 after 15 epochs, 434 s.
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dict(name="fashion_mnist", data_dir=config_dict.placeholder(str),
                          train_split="train", test_split="test",
                          in_memory=True, max_in_memory_gb=2.0)  # larger splits stream (docs/data.md)
    config.model = dict(name="sequential", layers=[
        dict(type="Conv2D", filters=32, kernel_size=3, padding="same", activation="relu"),
        dict(type="MaxPooling2D", pool_size=2),
        dict(type="Conv2D", filters=64, kernel_size=3, padding="same", activation="relu"),
        dict(type="MaxPooling2D", pool_size=2),
        dict(type="Flatten"),
        dict(type="Dropout", rate=0.3),
        dict(type="Dense", units=128, activation="relu"),
        dict(type="Dropout", rate=0.3),
        dict(type="Dense", units=10, activation="softmax"),
    ])
    config.loss = dict(name="sparse_categorical_crossentropy")
    config.optimizer = dict(name="adam", learning_rate=1e-3)
    config.train = dict(epochs=15, batch_size=128, validation_split=0.1, shuffle=True, metrics=("accuracy",))
    config.eval = dict(batch_size=1000)
    config.checkpoint = dict(save_final=True)
    config.mesh = dict(data=1, fsdp=1, rules=(), min_shard_bytes=4 * 2**20)  # many devices: docs/distributed.md
    config.distributed = dict(initialization_timeout_s=300.0, heartbeat_timeout_s=30.0, watchdog_s=600.0)
    config.sweep = dict(seeds=1, learning_rate=())  # several models at once: docs/configs.md "Sweeps"
    return config
