# %% [markdown]
# # 4. Gradient descent and its optimizers
#
# Every optimizer moves the weights against the gradient of the loss; they differ in how far and in
# what direction. Plain SGD takes a fixed step; momentum keeps a running direction that smooths the
# steps; RMSprop divides each step by a running size of that weight's gradients; Adam does both.
# Here the same model starts from the same weights and sees the same batches under each, and one
# plot compares their training loss, read every 10 steps through a Keras-style `on_log` callback.

# %%
import jax
import optax
from matplotlib.figure import Figure

from jaxnn import Dense, Flatten, Sequential, Trainer, optimizers
from jaxnn.callbacks import LambdaCallback
from jaxnn.data import load_arrays
from tutorial_setup import save, size

x_train, y_train = load_arrays("fashion_mnist", f"train[:{size(12000, 1000)}]")
candidates = {
    "SGD 0.01": optax.sgd(0.01),
    "SGD 0.01, momentum 0.9": optax.sgd(0.01, momentum=0.9),
    "RMSprop 0.001": optimizers.get("rmsprop"),     # Keras's defaults
    "Adam 0.001": optimizers.get("adam"),
}
model = Sequential([Flatten(), Dense(128, "relu"), Dense(10, "softmax")])

# %%
curves = {}
for name, tx in candidates.items():
    trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer=tx)
    steps, running_loss = [], []
    record = LambdaCallback(on_log=lambda logs: running_loss.append(logs["loss"]))  # the epoch's running mean
    state = trainer.init(jax.random.key(0), (28, 28, 1))
    state, history = trainer.fit(state, x_train, y_train, epochs=size(3, 1), batch_size=32, verbose=0,
                                 log_every_steps=10, callbacks=[record])
    curves[name] = running_loss
    print(f"{name:24s} loss after each epoch: {[round(v, 3) for v in history.history['loss']]}")

# %%
fig = Figure(figsize=(8, 5))
ax = fig.subplots()
for name, running_loss in curves.items():
    ax.plot([10 * (i + 1) for i in range(len(running_loss))], running_loss, label=name)
ax.set_xlabel("step")
ax.set_ylabel("running mean of the epoch's training loss")
ax.set_title("one model, one start, four optimizers")
ax.legend()
save(fig, "optimizers.png")

# %% [markdown]
# Batch, stochastic and mini-batch gradient descent differ only in the batch size: all examples,
# one, or a few dozen per step; `configs/gd_variants.py` and `bench/gd_variants.py` compare them.
