# %% [markdown]
# # 1. The perceptron, and why XOR needs a hidden layer
#
# Rosenblatt's perceptron (1957) multiplies each input by a weight, adds them up with a bias and
# answers 1 when the sum is positive: a linear threshold unit. Its learning rule moves the weights
# towards each example it gets wrong. It learns AND and OR, which a line separates, but never XOR,
# which no line separates: that limit is what the multilayer perceptron, trained by backpropagation,
# overcomes. Run it as a script or open it as a notebook (`jupytext --to notebook`).

# %%
import jax
import numpy as np
from matplotlib.figure import Figure

import jaxnn
from jaxnn import Dense, Sequential, Trainer
from jaxnn.tasks import perceptron_rule as perceptron
from tutorial_setup import epoch_axis, save, size

x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
gates = {"AND": np.array([0, 0, 0, 1]), "OR": np.array([0, 1, 1, 1]), "XOR": np.array([0, 1, 1, 0])}

# %% [markdown]
# ## The perceptron rule on AND, OR and XOR
#
# `perceptron.fit` applies the rule example by example; it returns the weights and the number of
# mistakes in each epoch. On AND and OR the mistakes reach 0; on XOR they never do.

# %%
fitted = {}
for name, y in gates.items():
    params, mistakes = perceptron.fit(perceptron.init(2), x, y, epochs=20)
    fitted[name] = params
    print(f"{name}: mistakes per epoch {np.asarray(mistakes)[:8].tolist()} ..., "
          f"accuracy {perceptron.accuracy(params, x, y):.2f}")

# %%
grid = np.stack(np.meshgrid(np.linspace(-0.5, 1.5, 200), np.linspace(-0.5, 1.5, 200)), -1).reshape(-1, 2)


def draw(ax, title, predict, y):
    """The plane coloured by the model's answer, and the four examples coloured by their labels."""
    ax.contourf(grid[:, 0].reshape(200, 200), grid[:, 1].reshape(200, 200),
                np.asarray(predict(grid)).reshape(200, 200), levels=[-0.5, 0.5, 1.5], colors=["#dde", "#fdd"])
    ax.scatter(x[:, 0], x[:, 1], c=["tab:blue" if t == 0 else "tab:red" for t in y], s=80, edgecolors="k")
    ax.set_title(title)
    ax.set_xticks([0, 1])
    ax.set_yticks([0, 1])


fig = Figure(figsize=(12, 4))
for ax, (name, y) in zip(fig.subplots(1, 3), gates.items()):
    draw(ax, f"perceptron on {name}", lambda g, p=fitted[name]: perceptron.predict(p, g), y)
save(fig, "perceptron_gates.png")

# %% [markdown]
# ## A multilayer perceptron solves XOR
#
# One hidden layer of a few tanh units bends the boundary. Written the Keras way: a `Sequential`,
# a loss, an optimizer, `fit`. Every example is in every batch (batch gradient descent).

# %%
mlp = Sequential([Dense(4, "tanh"), Dense(1, "sigmoid")])
trainer = Trainer(mlp, loss="binary_crossentropy", optimizer=jaxnn.optimizers.get("adam", learning_rate=0.05),
                  metrics=["accuracy"])
state = trainer.init(jax.random.key(0), (2,))
state, history = trainer.fit(state, x, gates["XOR"], epochs=size(300, 1), batch_size=4, verbose=0)
print(f"after {len(history.epoch)} epochs: loss {history.history['loss'][-1]:.4f}, "
      f"accuracy {history.history['accuracy'][-1]:.2f}")
print("predictions:", trainer.predict(state, x)[:, 0].round(3))

# %%
fig = Figure(figsize=(8, 4))
left, right = fig.subplots(1, 2)
draw(left, "MLP 2-4-1 on XOR", lambda g: trainer.predict_classes(state, g, batch_size=4096), gates["XOR"])
right.plot(range(1, len(history.epoch) + 1), history.history["loss"])
epoch_axis(right)
right.set_ylabel("binary cross-entropy")
right.set_title("training loss")
save(fig, "xor_mlp.png")
