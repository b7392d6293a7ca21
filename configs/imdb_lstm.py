"""IMDB sentiment with an Embedding + LSTM over word ids, as in Chollet's book that seed 004 follows.

    python train.py --config configs/imdb_lstm.py --workdir runs/imdb_lstm

Each review becomes the ids of its words (10,000-word vocabulary from the
training split; 0 padding, 1 unknown), cut or left-padded to its last 500
words, so the LSTM reads the padding first and ends on real words.
Embedding(10000, 32) -> LSTM(32) -> Dense(1, sigmoid), RMSprop, binary
cross-entropy, 10 epochs at batch 128 with 20% of the training reviews for validation.

Not measured here (no internet): tested end to end on TFDS mock data only.
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dict(name="imdb_reviews", data_dir=config_dict.placeholder(str),
                          train_split="train", test_split="test",
                          encoding="sequence", num_words=10_000, maxlen=500, label_encoding="integer")
    config.model = dict(name="sequential", layers=[
        dict(type="Embedding", input_dim=10_000, output_dim=32),
        dict(type="LSTM", units=32),
        dict(type="Dense", units=1, activation="sigmoid"),
    ])
    config.loss = dict(name="binary_crossentropy")
    config.optimizer = dict(name="rmsprop")
    config.train = dict(epochs=10, batch_size=128, validation_split=0.2, shuffle=True, metrics=("accuracy",))
    config.eval = dict(batch_size=1000)
    config.checkpoint = dict(save_final=True)
    config.mesh = dict(data=1, fsdp=1, rules=(), min_shard_bytes=4 * 2**20)  # many devices: docs/distributed.md
    config.distributed = dict(initialization_timeout_s=300.0, heartbeat_timeout_s=30.0, watchdog_s=600.0)
    config.sweep = dict(seeds=1, learning_rate=())  # several models at once: docs/configs.md "Sweeps"
    return config
