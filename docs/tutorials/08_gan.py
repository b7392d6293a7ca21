# %% [markdown]
# # 8. A generative adversarial network
#
# Two networks play against each other. The generator turns random vectors into images; the
# discriminator tells real images from generated ones. Each step, the discriminator learns to be a
# better judge, then the generator learns to fool the judge it now faces. Neither is given the
# answer: the generator learns what clothes look like only through the discriminator's gradients.
# Here a small DCGAN: transposed convolutions up from 7x7, strided convolutions down.

# %%
import jax
import numpy as np
import optax
from matplotlib.figure import Figure

import jaxnn
from jaxnn import (BatchNormalization, Conv2D, Conv2DTranspose, Dense, Dropout, Flatten, LeakyReLU, Reshape,
                   Sequential)
from jaxnn.data import load_arrays
from jaxnn.tasks.gan_model import GAN, image_grid, to_unit_range
from tutorial_setup import epoch_axis, save, size

images, _ = load_arrays("fashion_mnist", f"train[:{size(60000, 512)}]")
images = images * 2.0 - 1.0                      # [-1, 1], the range of the generator's tanh
LATENT = 64

generator = Sequential([
    Dense(7 * 7 * 64, use_bias=False), BatchNormalization(), LeakyReLU(0.2), Reshape((7, 7, 64)),
    Conv2DTranspose(32, 4, strides=2, padding="same", use_bias=False), BatchNormalization(), LeakyReLU(0.2),
    Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh"),
])
discriminator = Sequential([
    Conv2D(32, 4, strides=2, padding="same"), LeakyReLU(0.2),
    Conv2D(64, 4, strides=2, padding="same"), LeakyReLU(0.2),
    Flatten(), Dropout(0.3), Dense(1),            # one logit: real or generated
])
jaxnn.summary(generator, (LATENT,))

# %%
gan = GAN(generator, discriminator, latent_dim=LATENT,
          generator_optimizer=optax.adam(2e-4, b1=0.5), discriminator_optimizer=optax.adam(2e-4, b1=0.5))
state = gan.init(jax.random.key(0), image_shape=(28, 28, 1))
fixed_noise = gan.latent(jax.random.key(1), 32)                      # the same vectors after each epoch
snapshots = []


def keep_samples(epoch, state, logs):
    fakes, _ = generator.apply(state.generator.params, fixed_noise, state=state.generator.model_state)
    snapshots.append(np.asarray(to_unit_range(fakes)))
    print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in logs.items()))


state, history = gan.fit(state, images, epochs=size(5, 1), batch_size=64, on_epoch_end=keep_samples)

# %%
fig = Figure(figsize=(12, 2.2 * len(snapshots)))
for ax, (epoch, samples) in zip(np.atleast_1d(fig.subplots(len(snapshots), 1)), enumerate(snapshots, 1)):
    ax.imshow(image_grid(samples, cols=16)[..., 0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"after epoch {epoch}")
    ax.axis("off")
save(fig, "gan_samples.png")

# %%
fig = Figure(figsize=(10, 4))
left, right = fig.subplots(1, 2)
epochs = range(1, len(history.epoch) + 1)
left.plot(epochs, history.history["d_loss"], "o-", label="discriminator")
left.plot(epochs, history.history["g_loss"], "o-", label="generator")
left.set_title("losses")
right.plot(epochs, history.history["d_real"], "o-", label="D(real)")
right.plot(epochs, history.history["d_fake"], "o-", label="D(generated)")
right.set_title("the discriminator's mean answer")
for ax in (left, right):
    epoch_axis(ax)
    ax.legend()
save(fig, "gan_curves.png")
