# %% [markdown]
# # 9. Transfer learning
#
# A network trained on one task has learned features that serve others. Here a CNN learns classes
# 0-4 of Fashion-MNIST (T-shirt, trouser, pullover, dress, coat) from many examples; its
# convolutional base is then reused for classes 5-9 (sandal, shirt, sneaker, bag, ankle boot), of
# which only 500 labelled images are given. Phase 1 trains a new head on the frozen base
# (`trainable=False`); phase 2 fine-tunes everything at a low learning rate. A network trained
# from scratch on the same 500 images is the comparison.

# %%
import dataclasses

from matplotlib.figure import Figure

import jaxnn
from jaxnn import Conv2D, Dense, Flatten, MaxPooling2D, Sequential, Trainer, optimizers
from jaxnn.data import load_arrays
from tutorial_setup import epoch_axis, save, size

x_all, y_all = load_arrays("fashion_mnist", f"train[:{size(30000, 2000)}]")
x_test_all, y_test_all = load_arrays("fashion_mnist", f"test[:{size(10000, 500)}]")
old, new = y_all < 5, y_all >= 5
x_old, y_old = x_all[old], y_all[old]
x_new, y_new = x_all[new][:size(500, 200)], y_all[new][:size(500, 200)] - 5      # few labels: classes 5-9 as 0-4
x_test, y_test = x_test_all[y_test_all >= 5], y_test_all[y_test_all >= 5] - 5
EPOCHS = size(5, 1)


def base():
    return Sequential([Conv2D(32, 3, activation="relu"), MaxPooling2D(2), Conv2D(64, 3, activation="relu"),
                       MaxPooling2D(2), Flatten()], name="base")


def trainer_for(model, learning_rate=1e-3):
    return Trainer(model, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                   optimizer=optimizers.get("adam", learning_rate=learning_rate))

# %% [markdown]
# ## Pretraining on classes 0-4

# %%
pretrained_model = Sequential([base(), Dense(5, "softmax")])
pretrain = trainer_for(pretrained_model)
pretrained, _ = pretrain.fit(pretrain.init(0, (28, 28, 1)), x_old, y_old, epochs=EPOCHS, verbose=0)
print("pretrained on classes 0-4:", pretrain.evaluate(pretrained, x_test_all[y_test_all < 5], y_test_all[y_test_all < 5]))

# %% [markdown]
# ## Phase 1: the base frozen, a new head trained
#
# The new model has a layer called `base` like the old one, so `load_by_name` copies its parameters
# across; `trainable=False` keeps them as they are, and the summary counts them as non-trainable.

# %%
frozen_base = dataclasses.replace(base(), trainable=False)
transfer_model = Sequential([frozen_base, Dense(64, "relu"), Dense(5, "softmax")])
transfer_model.summary((28, 28, 1))
phase1 = trainer_for(transfer_model)
state = phase1.init(1, (28, 28, 1))
state = state.replace(params=jaxnn.transfer.load_by_name(state.params, pretrained.params, layers=["base"]))
state, head_history = phase1.fit(state, x_new, y_new, epochs=size(10, 1), validation_split=0.2, verbose=0)
print("phase 1:", phase1.evaluate(state, x_test, y_test))

# %% [markdown]
# ## Phase 2: everything fine-tuned, gently
#
# The same layers, all trainable now, and a learning rate a hundred times lower, so the pretrained
# features move only a little. A new optimizer starts its state afresh from the current parameters.

# %%
phase2 = trainer_for(Sequential([base(), Dense(64, "relu"), Dense(5, "softmax")]), learning_rate=1e-5)
state = phase2.init(2, (28, 28, 1)).replace(params=state.params)
state, tune_history = phase2.fit(state, x_new, y_new, epochs=EPOCHS, validation_split=0.2, verbose=0)
print("phase 2:", phase2.evaluate(state, x_test, y_test))

# %% [markdown]
# ## From scratch, on the same 500 images

# %%
scratch = trainer_for(Sequential([base(), Dense(64, "relu"), Dense(5, "softmax")]))
scratch_state, scratch_history = scratch.fit(scratch.init(3, (28, 28, 1)), x_new, y_new,
                                             epochs=size(15, 1), validation_split=0.2, verbose=0)
print("from scratch:", scratch.evaluate(scratch_state, x_test, y_test))

# %%
fig = Figure(figsize=(8, 4.5))
ax = fig.subplots()
transfer_curve = head_history.history["val_accuracy"] + tune_history.history["val_accuracy"]
ax.plot(range(1, len(transfer_curve) + 1), transfer_curve, "o-", label="transfer (frozen head, then fine-tuning)")
ax.axvline(len(head_history.epoch) + 0.5, color="grey", ls=":")
ax.plot(range(1, len(scratch_history.epoch) + 1), scratch_history.history["val_accuracy"], "s--",
        label="from scratch")
epoch_axis(ax)
ax.set_ylabel("validation accuracy on classes 5-9")
ax.legend()
save(fig, "transfer.png")
