# %% [markdown]
# # 3. Activation functions and loss functions
#
# An activation turns a neuron's weighted sum into its output; backpropagation needs its derivative,
# which `jax.grad` computes for any of them. The threshold (step) function of the perceptron has
# derivative 0 everywhere it is defined, so no gradient flows through it; the sigmoid's derivative
# is at most 0.25 and vanishes at both ends (the vanishing gradient of deep sigmoid networks);
# ReLU's is 1 for every positive input.

# %%
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from jaxnn import activations, losses
from tutorial_setup import save

z = jnp.linspace(-4.0, 4.0, 401)
names = ["step", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu", "swish"]

fig = Figure(figsize=(15, 8))
for ax, name in zip(fig.subplots(3, 3).flat, names):
    fn = activations.get(name)
    derivative = jax.vmap(jax.grad(lambda t: fn(t)))(z)   # elementwise: the gradient of each scalar
    ax.plot(z, fn(z), label=name)
    ax.plot(z, derivative, "--", label="derivative")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title(name)
    ax.legend(fontsize=8)
fig.tight_layout()
save(fig, "activations.png")

# %% [markdown]
# Softmax works on a whole vector: it turns scores into probabilities that sum to 1, the output
# of a classifier over several classes. Raising one score takes probability from the others.

# %%
scores = jnp.array([2.0, 1.0, 0.1])
probs = activations.softmax(scores)
print("softmax", probs.round(3), "sum", float(probs.sum()))
print("d softmax_0 / d scores", jax.grad(lambda s: activations.softmax(s)[0])(scores).round(3))

# %% [markdown]
# ## Losses
#
# A loss says how far one prediction is from its target. Against a target of 1: mean squared error
# grows gently, binary cross-entropy without bound as the predicted probability goes to 0, which is
# why a confident wrong answer costs so much. For regression, Huber is quadratic near 0 and linear
# beyond `delta`, so outliers pull less than in MSE.

# %%
p = jnp.linspace(0.001, 0.999, 300)[:, None]       # predicted probabilities, one per example
ones = jnp.ones(p.shape[0])                         # the target, 1, for each example
error = jnp.linspace(-3.0, 3.0, 300)[:, None]
zeros = jnp.zeros(error.shape[0])

panels = [
    ("classification, target 1", "predicted probability of the true class", p, ones,
     {"binary cross-entropy": losses.binary_crossentropy, "squared error": losses.mean_squared_error,
      "hinge": losses.hinge}),
    ("regression", "prediction - target", error, zeros,
     {"squared error": losses.mean_squared_error, "absolute error": losses.mean_absolute_error,
      "huber (delta 1)": losses.huber}),
]
fig = Figure(figsize=(12, 4))
for ax, (title, xlabel, preds, targets, fns) in zip(fig.subplots(1, 2), panels):
    for label, fn in fns.items():
        ax.plot(preds[:, 0], fn(targets, preds), label=label)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend()
save(fig, "losses.png")

# %% [markdown]
# Cross-entropy over several classes: `sparse_categorical_crossentropy` takes integer labels,
# `categorical_crossentropy` one-hot targets; on the same data they agree.

# %%
labels = np.array([0, 2])
probs = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
print(losses.sparse_categorical_crossentropy(labels, probs), losses.categorical_crossentropy(np.eye(3)[labels], probs))
