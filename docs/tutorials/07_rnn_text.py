# %% [markdown]
# # 7. Recurrent networks on text: IMDB reviews
#
# A review is a sequence of words. The notes' first model ignores the order: a multi-hot vector of
# the 10,000 most frequent words, two Dense layers. A recurrent layer reads the words in order,
# carrying a state from one to the next: `SimpleRNN` adds the new word to a squashed copy of the
# state, `LSTM` keeps a separate cell that gates decide what to forget, add and show, so it remembers
# further back. `Embedding` turns each word id into a learned vector first, and `mask_zero=True`
# keeps the padding (zeros before the words of a short review, as Keras pads) from changing the state.
#
# Without internet TFDS cannot download IMDB: this tutorial then (and always in fast mode) runs on
# TFDS's mock data, random words with random labels, which shows that everything runs but teaches
# nothing (accuracy stays near chance).

# %%
import jax
import tensorflow_datasets as tfds
from matplotlib.figure import Figure

from jaxnn import LSTM, Dense, Embedding, Sequential, SimpleRNN, Trainer
from jaxnn.data import DatasetUnavailableError, load_splits
from tutorial_setup import FAST, epoch_axis, save, size

NUM_WORDS, MAXLEN = size(10_000, 200), size(200, 20)


def load(**encoding):
    """IMDB's train and test splits, encoded; TFDS's mock data when the real data cannot be had."""
    if not FAST:
        try:
            return load_splits("imdb_reviews", ["train", "test"], num_words=NUM_WORDS, **encoding)
        except DatasetUnavailableError as e:
            print(f"{e}\n-> using TFDS's mock data")
    with tfds.testing.mock_data(num_examples=200):
        return load_splits("imdb_reviews", ["train", "test"], num_words=NUM_WORDS, **encoding)


(x_bag, y_train), (x_bag_test, y_test) = load(encoding="multi_hot")
(x_seq, _), (x_seq_test, _) = load(encoding="sequence", maxlen=MAXLEN)
print("multi-hot", x_bag.shape, "sequences", x_seq.shape, "labels", y_train[:10])

# %%
models = {
    "multi-hot, Dense 16-16": (Sequential([Dense(16, "relu"), Dense(16, "relu"), Dense(1, "sigmoid")]), x_bag),
    "Embedding + SimpleRNN": (Sequential([Embedding(NUM_WORDS, 32, mask_zero=True), SimpleRNN(32),
                                          Dense(1, "sigmoid")]), x_seq),
    "Embedding + LSTM": (Sequential([Embedding(NUM_WORDS, 32, mask_zero=True), LSTM(32),
                                     Dense(1, "sigmoid")]), x_seq),
}
histories = {}
for name, (model, x) in models.items():
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    state = trainer.init(jax.random.key(0), x.shape[1:])
    state, histories[name] = trainer.fit(state, x, y_train, epochs=size(5, 1), batch_size=size(128, 32),
                                         validation_split=0.2, verbose=0)
    test = x_bag_test if x is x_bag else x_seq_test
    print(f"{name:24s} test accuracy {trainer.evaluate(state, test, y_test)['accuracy']:.3f}")

# %%
fig = Figure(figsize=(12, 4))
left, right = fig.subplots(1, 2)
for name, history in histories.items():
    epochs = range(1, len(history.epoch) + 1)
    left.plot(epochs, history.history["val_loss"], "o-", label=name)
    right.plot(epochs, history.history["val_accuracy"], "o-", label=name)
left.set_title("validation loss")
right.set_title("validation accuracy")
for ax in (left, right):
    epoch_axis(ax)
    ax.legend()
save(fig, "text_models.png")

# %% [markdown]
# `configs/imdb_multihot.py` and `configs/imdb_lstm.py` run the first and last of these with
# `train.py`; `configs/fashion_mnist_lstm.py` reads each Fashion-MNIST image as a sequence of 28 rows.
