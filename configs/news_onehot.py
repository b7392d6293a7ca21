"""News topics, seed 004's Reuters recipe: multi-hot words, Dense(64) -> Dense(64) -> softmax,
one-hot labels and categorical cross-entropy (configs/news_sparse.py: integer labels).

    python train.py --config configs/news_onehot.py --workdir runs/news_onehot

TFDS has no Reuters newswires (the seed's 46 topics); its news-topic classification
set is `ag_news_subset`: AG's news articles in 4 topics (World, Sports, Business,
Sci/Tech), 120,000 for training and 7,600 for testing. A document is the
article's title and description. The first 30,000 training articles keep the
(articles, 10,000) float32 multi-hot matrix at 1.2 GB; `--config.dataset.train_split=train`
takes all of them (4.8 GB). 10% are held out for validation.

Not measured here (no internet): tested end to end on TFDS mock data only.
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dict(name="ag_news_subset", data_dir=config_dict.placeholder(str),
                          train_split="train[:30000]", test_split="test",
                          encoding="multi_hot", num_words=10_000, label_encoding="one_hot")
    config.model = dict(name="sequential", layers=[
        dict(type="Dense", units=64, activation="relu"),
        dict(type="Dense", units=64, activation="relu"),
        dict(type="Dense", units=4, activation="softmax"),
    ])
    config.loss = dict(name="categorical_crossentropy")
    config.optimizer = dict(name="rmsprop")
    config.train = dict(epochs=9, batch_size=512, validation_split=0.1, shuffle=True, metrics=("accuracy",))
    config.eval = dict(batch_size=1000)
    config.checkpoint = dict(save_final=True)
    config.mesh = dict(data=1, fsdp=1, rules=(), min_shard_bytes=4 * 2**20)  # many devices: docs/distributed.md
    config.distributed = dict(initialization_timeout_s=300.0, heartbeat_timeout_s=30.0, watchdog_s=600.0)
    config.sweep = dict(seeds=1, learning_rate=())  # several models at once: docs/configs.md "Sweeps"
    return config
