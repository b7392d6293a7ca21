# %% [markdown]
# # 6. A convolutional network
#
# A Dense layer sees an image as 784 unrelated numbers. A convolution slides small filters (3x3
# here) over it, so the same weights look for the same pattern everywhere; max pooling halves the
# resolution and keeps the strongest answers. Two such blocks, then a small Dense head.

# %%
import jax
import numpy as np
from matplotlib.figure import Figure

import jaxnn
from jaxnn import Conv2D, Dense, Dropout, Flatten, MaxPooling2D, Sequential, Trainer
from jaxnn.callbacks import EarlyStopping
from jaxnn.data import load_arrays
from tutorial_setup import save, size

x_train, y_train = load_arrays("fashion_mnist", f"train[:{size(60000, 1000)}]")
x_test, y_test = load_arrays("fashion_mnist", f"test[:{size(10000, 200)}]")

model = Sequential([
    jaxnn.Input((28, 28, 1)),
    Conv2D(32, 3, activation="relu"), MaxPooling2D(2),
    Conv2D(64, 3, activation="relu"), MaxPooling2D(2),
    Flatten(), Dropout(0.3), Dense(128, "relu"), Dense(10, "softmax"),
])
model.summary()   # the Input gives the shape: (None, 26, 26, 32) after a 3x3 "valid" convolution, ...

# %%
trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
state = trainer.init(jax.random.key(0), (28, 28, 1))
state, history = trainer.fit(state, x_train, y_train, epochs=size(5, 1), batch_size=64, validation_split=0.1,
                             callbacks=[EarlyStopping(patience=2, restore_best_weights=True)])
print(trainer.evaluate(state, x_test, y_test))
save(jaxnn.plot_history(history), "cnn_curves.png")

# %% [markdown]
# ## What the first layer learned
#
# The 32 filters of the first convolution, and what each makes of one test image: its feature maps.
# A layer is a pure function of its parameters, so one layer can be applied on its own.

# %%
conv = model.layers[1]
kernels = np.asarray(state.params["conv2d"]["kernel"])           # (3, 3, 1, 32)
maps, _ = conv.apply(state.params["conv2d"], x_test[:1])          # (1, 26, 26, 32)
fig = Figure(figsize=(12, 6))
axes = fig.subplots(4, 16)
for i in range(32):
    top, bottom = axes[2 * (i // 16), i % 16], axes[2 * (i // 16) + 1, i % 16]
    top.imshow(kernels[..., 0, i], cmap="bwr")
    bottom.imshow(np.asarray(maps[0, ..., i]), cmap="gray")
    top.axis("off")
    bottom.axis("off")
fig.suptitle("first-layer filters (rows 1 and 3) and their feature maps of one test image (rows 2 and 4)")
save(fig, "cnn_filters.png")
