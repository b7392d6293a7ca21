"""Generative adversarial networks: two jaxnn models, two optax optimizers, one pure jitted step.

    gan = GAN(generator, discriminator, latent_dim=100,
              generator_optimizer=optax.adam(2e-4, b1=0.5), discriminator_optimizer=optax.adam(2e-4, b1=0.5))
    state = gan.init(jax.random.key(0), image_shape=(28, 28, 1))
    state, metrics = gan.train_step(state, real_images)      # images in [-1, 1], like a tanh generator
    state, history = gan.fit(state, images, epochs=5, batch_size=64)

One step updates the discriminator on a real batch and a generated one, then
the generator against the updated discriminator (Goodfellow et al. 2014, with
the non-saturating generator loss -log D(G(z))). The discriminator returns one
logit per image; both losses are `jaxnn.losses.binary_crossentropy` from logits.
Everything that changes is in `GANState`; the step's randomness comes from the
state's base key and the step number only, as in `TrainState`.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import validation
from jaxnn.layers.base import Layer
from jaxnn.layers.shapes import ShapeError, abstract_init, as_shape
from jaxnn.losses import binary_crossentropy
from jaxnn.training.history import History
from jaxnn.training.loop import StepsInFlight
from jaxnn.training.state import STEP_STREAM, derive_key, epoch_permutation

METRICS = ("d_loss", "g_loss", "d_real", "d_fake")


@flax.struct.dataclass
class Player:
    """One side of the game: its `params`, `model_state` (BatchNorm statistics) and `opt_state`."""

    params: dict
    model_state: dict
    opt_state: optax.OptState


@flax.struct.dataclass
class GANState:
    """`step`, the `generator` and `discriminator` players, and the base PRNG `key` (never consumed)."""

    step: jax.Array
    generator: Player
    discriminator: Player
    key: jax.Array


def _bce_from_logits(target: float, logits) -> jax.Array:
    """Mean binary cross-entropy of `logits` against a constant target (1 real, 0 generated)."""
    return jnp.mean(binary_crossentropy(jnp.full_like(logits, target), logits, from_logits=True))


def to_unit_range(images) -> jax.Array:
    """Generator outputs in [-1, 1] (tanh) as images in [0, 1]."""
    return jnp.clip((images + 1.0) / 2.0, 0.0, 1.0)


@dataclasses.dataclass(frozen=True, eq=False)
class GAN:
    """A `generator` (latent vectors of `latent_dim` -> images) and a `discriminator` (images -> one logit each)."""

    generator: Layer
    discriminator: Layer
    latent_dim: int
    generator_optimizer: optax.GradientTransformation
    discriminator_optimizer: optax.GradientTransformation

    def __post_init__(self):
        for field in ("generator", "discriminator"):
            if not isinstance(getattr(self, field), Layer):
                raise ValueError(f"{field} must be a jaxnn layer, got {type(getattr(self, field)).__name__}")
        validation.positive_int("latent_dim", self.latent_dim)

    def check_shapes(self, image_shape) -> None:
        """Generator output must be `image_shape` and the discriminator must give one logit per image."""
        image_shape = as_shape(image_shape)
        try:
            generated, _, _ = abstract_init(self.generator, (None, self.latent_dim))
        except ShapeError as e:
            raise ShapeError(f"generator on latent vectors (None, {self.latent_dim}): {e}") from None
        if tuple(generated) != (None, *image_shape):
            raise ShapeError(f"generator outputs {tuple(generated)} but the images are {(None, *image_shape)}")
        try:
            logits, _, _ = abstract_init(self.discriminator, (None, *image_shape))
        except ShapeError as e:
            raise ShapeError(f"discriminator on images {(None, *image_shape)}: {e}") from None
        if tuple(logits) != (None, 1):
            raise ShapeError(f"discriminator outputs {tuple(logits)}, it must give one logit per image: (None, 1)")

    def init(self, key, image_shape) -> GANState:
        """A fresh GANState for images of `image_shape` (no batch dimension)."""
        self.check_shapes(image_shape)
        g_key, d_key, base_key = jax.random.split(key, 3)
        _, g_params, g_state = self.generator.init(g_key, (None, self.latent_dim))
        _, d_params, d_state = self.discriminator.init(d_key, (None, *as_shape(image_shape)))
        return GANState(step=jnp.zeros((), jnp.int32),
                        generator=Player(g_params, g_state, self.generator_optimizer.init(g_params)),
                        discriminator=Player(d_params, d_state, self.discriminator_optimizer.init(d_params)),
                        key=base_key)

    def step(self, state: GANState, real) -> tuple[GANState, dict]:
        """The pure step `(state, real_images) -> (state, metrics)`: one discriminator, then one generator update.

        Metrics are device scalars: `d_loss` (real + generated), `g_loss`
        (non-saturating), `d_real`/`d_fake`: the mean D(x) and D(G(z)) the
        discriminator saw before its update.
        """
        g, d = state.generator, state.discriminator
        batch = real.shape[0]
        z_d, z_g, g_key_d, d_key_d, g_key_g, d_key_g = jax.random.split(
            derive_key(state.key, STEP_STREAM, state.step), 6)

        fake, g_model_state = self.generator.apply(
            g.params, jax.random.normal(z_d, (batch, self.latent_dim)), state=g.model_state, key=g_key_d, train=True)
        fake = jax.lax.stop_gradient(fake)  # the discriminator's update leaves the generator alone

        def d_objective(d_params):
            # Real and generated images in one batch: one pass, one BatchNorm statistics update.
            logits, d_model_state = self.discriminator.apply(
                d_params, jnp.concatenate([real.astype(fake.dtype), fake]), state=d.model_state, key=d_key_d,
                train=True)
            real_logits, fake_logits = logits[:batch], logits[batch:]
            loss = _bce_from_logits(1.0, real_logits) + _bce_from_logits(0.0, fake_logits)
            return loss, (d_model_state, real_logits, fake_logits)

        (d_loss, (d_model_state, real_logits, fake_logits)), d_grads = jax.value_and_grad(
            d_objective, has_aux=True)(d.params)
        d_updates, d_opt_state = self.discriminator_optimizer.update(d_grads, d.opt_state, d.params)
        d_params = optax.apply_updates(d.params, d_updates)

        def g_objective(g_params):
            images, new_g_state = self.generator.apply(
                g_params, jax.random.normal(z_g, (batch, self.latent_dim)), state=g_model_state, key=g_key_g,
                train=True)
            # The discriminator's statistics from this pass are dropped: only its own update moves them.
            logits, _ = self.discriminator.apply(d_params, images, state=d_model_state, key=d_key_g, train=True)
            return _bce_from_logits(1.0, logits), new_g_state

        (g_loss, g_model_state), g_grads = jax.value_and_grad(g_objective, has_aux=True)(g.params)
        g_updates, g_opt_state = self.generator_optimizer.update(g_grads, g.opt_state, g.params)
        new_state = state.replace(
            step=state.step + 1,
            generator=Player(optax.apply_updates(g.params, g_updates), g_model_state, g_opt_state),
            discriminator=Player(d_params, d_model_state, d_opt_state))
        metrics = {"d_loss": d_loss, "g_loss": g_loss, "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
                   "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}
        return new_state, metrics

    @functools.cached_property
    def train_step(self) -> Callable:
        """`step` jitted, the input state donated."""
        return jax.jit(self.step, donate_argnums=0)

    @functools.cached_property
    def _generate(self) -> Callable:
        def generate(params, model_state, z):
            return to_unit_range(self.generator.apply(params, z, state=model_state, train=False)[0])

        return jax.jit(generate)

    def generate(self, generator: Player | dict, z) -> np.ndarray:
        """Images in [0, 1] from latent vectors `z` (inference mode: BatchNorm uses its moving statistics).

        `generator` is the state's Player or a dict with `params` and `model_state` (a checkpoint).
        """
        params, model_state = ((generator.params, generator.model_state) if isinstance(generator, Player)
                               else (generator["params"], generator["model_state"]))
        return np.asarray(self._generate(params, model_state, z))

    def latent(self, key, num: int) -> jax.Array:
        """`num` latent vectors from N(0, 1), as the step draws them."""
        return jax.random.normal(key, (num, self.latent_dim))

    def fit(self, state: GANState, images, *, epochs: int, batch_size: int,
            on_epoch_end: Callable | None = None) -> tuple[GANState, History]:
        """Train for `epochs` over `images` (in [-1, 1]); returns `(state, History)` of the epoch-mean metrics.

        Each epoch visits the images in an order drawn from the state's key and
        the epoch number; the last partial batch is dropped. The metrics are
        summed on the device and fetched once per epoch;
        `on_epoch_end(epoch, state, logs)` runs after each epoch.
        """
        n = int(np.shape(images)[0])
        validation.positive_int("epochs", epochs)
        validation.require("batch_size", batch_size, validation.is_int(batch_size) and 0 < batch_size <= n,
                           f"a positive integer at most the {n} images")
        data, steps, history = jax.device_put(images), n // batch_size, History()
        for epoch in range(epochs):
            perm = epoch_permutation(state.key, epoch, n)
            totals, in_flight = {k: jnp.zeros((), jnp.float32) for k in METRICS}, StepsInFlight()
            for i in range(steps):
                state, metrics = self.train_step(state, _take_batch(data, perm, i, batch_size))
                totals = _add(totals, metrics)
                in_flight.push(totals)
            logs = {k: float(v) / steps for k, v in jax.device_get(totals).items()}
            history.append(epoch, logs)
            if on_epoch_end is not None:
                on_epoch_end(epoch, state, logs)
        return state, history


@functools.partial(jax.jit, static_argnums=3)
def _take_batch(data, perm, index, batch_size):
    return jnp.take(data, jax.lax.dynamic_slice_in_dim(perm, index * batch_size, batch_size), axis=0)


@jax.jit
def _add(totals, metrics):
    return jax.tree_util.tree_map(lambda a, b: a + b.astype(a.dtype), totals, metrics)


def image_grid(images, cols: int, pad: int = 2) -> np.ndarray:
    """Images (N, H, W, C) in [0, 1] tiled row by row into one (rows*(H+pad)-pad, cols*(W+pad)-pad, C) array."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    rows = -(-n // cols)
    grid = np.ones((rows * (h + pad) - pad, cols * (w + pad) - pad, c), images.dtype)
    for i, image in enumerate(images):
        r, col = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = image
    return grid


def save_image_grid(images, path: str | os.PathLike, cols: int) -> None:
    """Write images (N, H, W, C) in [0, 1] as one PNG grid, `cols` per row (grey for one channel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image

    grid = image_grid(images, cols)
    grid = grid[..., 0] if grid.shape[-1] == 1 else grid
    matplotlib.image.imsave(os.fspath(path), grid, cmap="gray", vmin=0.0, vmax=1.0)
