"""IMDB sentiment as in seed 004: multi-hot vectors of the 10,000 most frequent training words,
Dense(16, relu) -> Dense(16, relu) -> Dense(1, sigmoid), RMSprop, binary cross-entropy.

    python train.py --config configs/imdb_multihot.py --workdir runs/imdb_multihot

TFDS `imdb_reviews`: 25,000 training and 25,000 test reviews (downloaded once).
The vocabulary is built from the training split only (ids 0 padding, 1 unknown
word; see jaxnn/data/text.py). As in the seed's exploration, 10,000 training
reviews are held out for validation and the model trains 20 epochs at batch 512:
the validation loss bottoms out after a few epochs and then rises (overfitting).
The seed's final model: `--config.train.epochs=4 --config.train.validation_split=0.0`.

Not measured here (no internet): tested end to end on TFDS mock data only.
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dict(name="imdb_reviews", data_dir=config_dict.placeholder(str),
                          train_split="train", test_split="test",
                          encoding="multi_hot", num_words=10_000, label_encoding="integer")
    config.model = dict(name="sequential", layers=[
        dict(type="Dense", units=16, activation="relu"),
        dict(type="Dense", units=16, activation="relu"),
        dict(type="Dense", units=1, activation="sigmoid"),
    ])
    config.loss = dict(name="binary_crossentropy")
    config.optimizer = dict(name="rmsprop")  # Keras defaults: lr 1e-3, rho 0.9, eps 1e-7
    config.train = dict(epochs=20, batch_size=512, validation_split=0.4, shuffle=True, metrics=("accuracy",))
    config.eval = dict(batch_size=1000)
    config.checkpoint = dict(save_final=True)
    config.mesh = dict(data=1, fsdp=1, rules=(), min_shard_bytes=4 * 2**20)  # many devices: docs/distributed.md
    config.distributed = dict(initialization_timeout_s=300.0, heartbeat_timeout_s=30.0, watchdog_s=600.0)
    config.sweep = dict(seeds=1, learning_rate=())  # several models at once: docs/configs.md "Sweeps"
    return config
