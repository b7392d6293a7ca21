# %% [markdown]
# # 2. A multilayer perceptron on Fashion-MNIST
#
# The notes' first real network: 28x28 grey images of clothes in 10 classes, flattened into 784
# inputs, one hidden layer, a softmax over the classes. Build it, read its summary, train it with
# 20% of the training images held out for validation, and read the curves.

# %%
import jax
import numpy as np
from matplotlib.figure import Figure

import jaxnn
from jaxnn import Dense, Flatten, Sequential, Trainer
from jaxnn.data import load_arrays
from tutorial_setup import save, size

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
x_train, y_train = load_arrays("fashion_mnist", f"train[:{size(60000, 2000)}]")
x_test, y_test = load_arrays("fashion_mnist", f"test[:{size(10000, 500)}]")
print(x_train.shape, x_train.dtype, y_train[:10])   # float32 images in [0, 1], integer labels

# %%
fig = Figure(figsize=(10, 4))
for ax, image, label in zip(fig.subplots(2, 5).flat, x_train, y_train):
    ax.imshow(image[..., 0], cmap="gray_r")
    ax.set_title(CLASSES[label], fontsize=9)
    ax.axis("off")
save(fig, "samples.png")

# %% [markdown]
# ## The model and its summary
#
# `Dense(100, "sigmoid")` has 784 x 100 weights and 100 biases: 78,500 parameters; the output layer
# 100 x 10 + 10 = 1,010. The summary's shapes start with None, the batch, as in Keras.

# %%
model = Sequential([Flatten(), Dense(100, "sigmoid"), Dense(10, "softmax")])
model.summary((28, 28, 1))

# %% [markdown]
# ## Training
#
# `sparse_categorical_crossentropy` takes the integer labels as they are; RMSprop with Keras's
# defaults. `fit` returns the new state and the History: one value per epoch of each metric.

# %%
trainer = Trainer(model, loss="sparse_categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
state = trainer.init(jax.random.key(0), (28, 28, 1))
state, history = trainer.fit(state, x_train, y_train, epochs=size(10, 1), batch_size=32, validation_split=0.2)
print(trainer.evaluate(state, x_test, y_test))

# %%
save(jaxnn.plot_history(history), "curves.png")

# %% [markdown]
# ## Predictions
#
# `predict` gives the softmax probabilities; the most probable class is the answer.

# %%
probs = trainer.predict(state, x_test[:10])
fig = Figure(figsize=(10, 4.5))
for ax, image, p, label in zip(fig.subplots(2, 5).flat, x_test, probs, y_test):
    guess = int(np.argmax(p))
    ax.imshow(image[..., 0], cmap="gray_r")
    ax.set_title(f"{CLASSES[guess]} {p[guess]:.0%}", fontsize=9, color="black" if guess == label else "red")
    ax.axis("off")
save(fig, "predictions.png")
