# %% [markdown]
# # 5. Overfitting, and callbacks that stop in time
#
# A large network trained long on few examples learns them by heart: the training loss keeps
# falling while the validation loss, on examples it never trains on, turns and rises. Keras's
# callbacks watch those numbers at each epoch end: `EarlyStopping` stops when the validation loss
# has not improved for `patience` epochs and can go back to the best epoch's weights; a callback of
# your own is a class with the hooks it needs, written exactly as for Keras.

# %%
import jax
from matplotlib.figure import Figure

from jaxnn import Dense, Dropout, Flatten, Sequential, Trainer
from jaxnn.callbacks import Callback, CSVLogger, EarlyStopping
from jaxnn.data import load_arrays
from tutorial_setup import OUT, epoch_axis, save, size

x_train, y_train = load_arrays("fashion_mnist", f"train[:{size(1000, 500)}]")   # few examples: easy to overfit
x_val, y_val = load_arrays("fashion_mnist", f"test[:{size(2000, 200)}]")
EPOCHS = size(60, 1)


def big_model(dropout=0.0):
    return Sequential([Flatten(), Dense(512, "relu"), Dropout(dropout), Dense(512, "relu"), Dropout(dropout),
                       Dense(10, "softmax")])


def train(model, callbacks=()):
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    state = trainer.init(jax.random.key(0), (28, 28, 1))
    return trainer.fit(state, x_train, y_train, epochs=EPOCHS, batch_size=32, validation_data=(x_val, y_val),
                       callbacks=list(callbacks), verbose=0)

# %% [markdown]
# ## Left alone, it overfits

# %%
_, plain = train(big_model())
best = min(range(len(plain.epoch)), key=plain.history["val_loss"].__getitem__)
print(f"lowest val_loss {plain.history['val_loss'][best]:.3f} at epoch {best + 1}; "
      f"at the end {plain.history['val_loss'][-1]:.3f} (training loss {plain.history['loss'][-1]:.4f})")

# %% [markdown]
# ## A callback of your own, Keras-style, and EarlyStopping
#
# `on_epoch_end(self, epoch, logs)` gets the epoch's numbers; the run in progress is `self.run`
# (Keras's `self.model`), so `self.run.stop_training = True` would stop it too.

# %%
class GapReport(Callback):
    """Prints how far validation loss is above training loss, every 5 epochs."""

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % 5 == 0:
            print(f"epoch {epoch + 1}: val_loss - loss = {logs['val_loss'] - logs['loss']:.3f}")

    def on_train_end(self, logs=None):
        why = self.run.history.stop_reason or "every epoch ran"
        print(f"stopped after {len(self.run.history.epoch)} epochs: {why}")


stopper = EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
_, stopped = train(big_model(), [GapReport(), stopper, CSVLogger(OUT / "early_stopping.csv")])

# %% [markdown]
# ## Dropout fights overfitting from inside the model

# %%
_, dropped = train(big_model(dropout=0.5))

# %%
fig = Figure(figsize=(12, 4))
for ax, (title, history) in zip(fig.subplots(1, 3), [("no regularization", plain), ("EarlyStopping", stopped),
                                                      ("Dropout 0.5", dropped)]):
    epochs = range(1, len(history.epoch) + 1)
    ax.plot(epochs, history.history["loss"], label="loss")
    ax.plot(epochs, history.history["val_loss"], label="val_loss")
    ax.set_title(title)
    epoch_axis(ax)
    ax.legend()
save(fig, "overfitting.png")
