"""GAN: the one jitted step against a hand-written reference, purity, compile count, sample grids, the gan task."""
import json
import os

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import optax
import pytest

from jaxnn.layers import BatchNormalization, Dense, Dropout, Flatten, LeakyReLU, Reshape
from jaxnn.models import Sequential
from jaxnn.runner import run
from jaxnn.tasks import load_gan
from jaxnn.tasks.gan_model import GAN, image_grid, save_image_grid
from jaxnn.training.state import STEP_STREAM, derive_key
from config_files import load_config, set_field

LATENT, SHAPE, BATCH = 4, (6, 6, 1), 8


def tiny_gan(g_tx=None, d_tx=None, dropout: float = 0.0) -> GAN:
    """An MLP GAN on 6x6 images: BatchNorm in the generator (model state), optional Dropout in the discriminator."""
    generator = Sequential([Dense(16), BatchNormalization(), LeakyReLU(0.2), Dense(36, "tanh"), Reshape(SHAPE)])
    discriminator = Sequential([Flatten(), Dense(16), LeakyReLU(0.2), *([Dropout(dropout)] if dropout else []),
                                Dense(1)])
    return GAN(generator, discriminator, LATENT, g_tx or optax.sgd(0.1), d_tx or optax.sgd(0.1))


def real_batch(seed: int = 0) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (BATCH, *SHAPE)), jnp.float32)


def tree_equal(a, b) -> bool:
    return all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


def copy(tree):
    """Host copies, so a donating step cannot delete what the test compares against."""
    key_data = lambda a: jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a
    return jax.tree_util.tree_map(lambda a: np.array(key_data(a), copy=True), tree)


def written_out_step(gan, state, real):
    """The step by hand: both SGD(0.1) updates and the metrics, from the documented key derivation."""
    z1, z2 = (jax.random.normal(k, (BATCH, LATENT))
              for k in jax.random.split(derive_key(state.key, STEP_STREAM, state.step), 6)[:2])
    g, d = state.generator, state.discriminator
    gen = lambda p, s, z: gan.generator.apply(p, z, state=s, train=True)
    disc = lambda p, x: gan.discriminator.apply(p, x, train=True)[0]
    fake, g_state = gen(g.params, g.model_state, z1)
    d_loss = lambda p: -jnp.mean(jax.nn.log_sigmoid(disc(p, real))) - jnp.mean(jax.nn.log_sigmoid(-disc(p, fake)))
    d_params = jax.tree_util.tree_map(lambda w, dw: w - 0.1 * dw, d.params, jax.grad(d_loss)(d.params))
    g_loss = lambda p: -jnp.mean(jax.nn.log_sigmoid(disc(d_params, gen(p, g_state, z2)[0])))
    return {"d_params": d_params,
            "g_params": jax.tree_util.tree_map(lambda w, dw: w - 0.1 * dw, g.params, jax.grad(g_loss)(g.params)),
            "g_state": gen(g.params, g_state, z2)[1],                 # BatchNorm statistics: two passes per step
            "metrics": {"d_loss": d_loss(d.params), "g_loss": g_loss(g.params),      # each before its update
                        "d_real": jnp.mean(jax.nn.sigmoid(disc(d.params, real))),
                        "d_fake": jnp.mean(jax.nn.sigmoid(disc(d.params, fake)))}}


@pytest.mark.parametrize("step", [0, 5])
def test_step_matches_the_written_out_alternating_updates(step):
    """D: one SGD step on -log D(x) - log(1 - D(G(z1))); then G: one SGD step on -log D'(G(z2)) with the new D';
    the latent vectors come from the key of the state's step (step 5: a key that ignored the step fails)."""
    gan = tiny_gan()
    state, real = gan.init(jax.random.key(0), SHAPE).replace(step=jnp.asarray(step, jnp.int32)), real_batch()
    new, metrics = jax.jit(gan.step)(state, real)

    reference = jax.jit(written_out_step, static_argnums=0)(gan, state, real)
    close = lambda a, b: jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
                                                a, b)
    close(new.discriminator.params, reference["d_params"])
    close(new.generator.params, reference["g_params"])
    close(new.generator.model_state, reference["g_state"])
    close(metrics, reference["metrics"])
    assert int(new.step) == step + 1


@pytest.mark.parametrize("frozen_side", ["generator", "discriminator"])
def test_each_optimizer_moves_only_its_own_model(frozen_side):
    """A zero learning rate on one side: its params stay bit-identical while the other side's change."""
    gan = tiny_gan(**{"g_tx" if frozen_side == "generator" else "d_tx": optax.sgd(0.0)})
    state = gan.init(jax.random.key(1), SHAPE)
    before = copy(state)
    for i in range(3):
        state, _ = gan.train_step(state, real_batch(i))
    other = "discriminator" if frozen_side == "generator" else "generator"
    assert tree_equal(getattr(state, frozen_side).params, getattr(before, frozen_side).params)
    assert not tree_equal(getattr(state, other).params, getattr(before, other).params)


def test_step_is_pure_compiles_once_and_donates_its_state():
    gan = tiny_gan(optax.adam(1e-3), optax.adam(1e-3), dropout=0.5)
    state = gan.init(jax.random.key(2), SHAPE)
    pure = jax.jit(gan.step)
    first, second = pure(state, real_batch()), pure(state, real_batch())
    assert tree_equal(copy(first), copy(second))                      # same inputs, same outputs
    later, _ = pure(first[0], real_batch())                            # the next step draws other dropout masks
    assert not tree_equal(later.discriminator.params, first[0].discriminator.params)

    losses = []
    for i in range(4):
        old = state
        state, metrics = gan.train_step(state, real_batch(i))
        losses.append(jax.device_get(metrics))
    assert gan.train_step._cache_size() == 1
    assert old.generator.params["dense"]["kernel"].is_deleted()       # the input state was donated
    assert all(np.isfinite(v) for m in losses for v in m.values())
    assert int(state.step) == 4


def gan_visit_orders(seed: int, epochs: int = 3, n: int = 24) -> np.ndarray:
    """The image ids GAN.fit trains on, in order, per epoch (image i is filled with the value i / n)."""
    gan = tiny_gan()
    images = (np.arange(n, dtype=np.float32)[:, None, None, None] / n * np.ones((1, *SHAPE), np.float32))
    real_step, seen = gan.train_step, []

    def recording_step(state, batch):
        seen.append(np.rint(np.asarray(batch)[:, 0, 0, 0] * n).astype(int))
        return real_step(state, batch)

    gan.__dict__["train_step"] = recording_step  # the cached property, replaced on this instance only
    gan.fit(gan.init(jax.random.key(seed), SHAPE), images, epochs=epochs, batch_size=BATCH)
    return np.concatenate(seen).reshape(epochs, n)


def test_fit_visits_every_image_once_per_epoch_in_a_new_order_fixed_by_the_seed(check_epoch_orders):
    check_epoch_orders(lambda seed: gan_visit_orders(seed=seed))


def test_fit_shuffles_per_epoch_and_returns_epoch_means():
    gan = tiny_gan(optax.adam(1e-3), optax.adam(1e-3))
    images = np.random.default_rng(3).uniform(-1, 1, (20, *SHAPE)).astype(np.float32)
    seen = []
    state, history = gan.fit(gan.init(jax.random.key(3), SHAPE), images, epochs=2, batch_size=8,
                             on_epoch_end=lambda epoch, state, logs: seen.append((epoch, int(state.step), logs)))
    assert [(e, s) for e, s, _ in seen] == [(0, 2), (1, 4)]             # 20 // 8 = 2 steps per epoch
    assert sorted(history.history) == ["d_fake", "d_loss", "d_real", "g_loss"]
    assert history.history["d_loss"] == [logs["d_loss"] for _, _, logs in seen]
    with pytest.raises(ValueError, match="batch_size must be a positive integer at most the 20 images, got 21"):
        gan.fit(state, images, epochs=1, batch_size=21)
    with pytest.raises(ValueError, match="epochs must be a positive integer, got 0"):
        gan.fit(state, images, epochs=0, batch_size=8)


@pytest.mark.parametrize("generator,discriminator,match", [
    (Sequential([Dense(35, "tanh"), Reshape((5, 7, 1))]), Sequential([Flatten(), Dense(1)]),
     r"generator outputs \(None, 5, 7, 1\) but the images are \(None, 6, 6, 1\)"),
    (Sequential([Dense(36, "tanh"), Reshape(SHAPE)]), Sequential([Flatten(), Dense(2)]),
     r"discriminator outputs \(None, 2\), it must give one logit per image: \(None, 1\)"),
    (Sequential([Reshape((3, 3, 1))]), Sequential([Flatten(), Dense(1)]), r"generator on latent vectors \(None, 4\)"),
])
def test_shapes_that_do_not_fit_are_rejected(generator, discriminator, match):
    gan = GAN(generator, discriminator, LATENT, optax.sgd(0.1), optax.sgd(0.1))
    with pytest.raises(ValueError, match=match):
        gan.init(jax.random.key(0), SHAPE)


def test_image_grid_layout_by_hand(tmp_path):
    images = np.stack([np.full((2, 2, 1), v, np.float32) for v in (0.0, 0.25, 0.5)])
    grid = image_grid(images, cols=2, pad=1)
    expected = np.array([[0, 0, 1, .25, .25],
                         [0, 0, 1, .25, .25],
                         [1, 1, 1, 1, 1],
                         [.5, .5, 1, 1, 1],
                         [.5, .5, 1, 1, 1]], np.float32)[..., None]
    np.testing.assert_array_equal(grid, expected)
    save_image_grid(images, tmp_path / "grid.png", cols=2)
    png = matplotlib.image.imread(tmp_path / "grid.png")              # RGBA, grey: R = G = B = the pixel
    np.testing.assert_allclose(png[..., :3], np.repeat(image_grid(images, cols=2), 3, axis=-1), atol=1 / 255)



def small_config():
    """The real config on 128 training images with a small MLP generator: seconds, through the real data path."""
    config = load_config("fashion_mnist_gan")
    config.dataset.train_split = "train[:128]"
    config.model.latent_dim = 8
    config.model.generator.layers = [dict(type="Dense", units=32), dict(type="BatchNormalization"),
                                     dict(type="LeakyReLU", negative_slope=0.2),
                                     dict(type="Dense", units=784, activation="tanh"),
                                     dict(type="Reshape", target_shape=(28, 28, 1))]
    config.train.epochs, config.train.batch_size = 2, 32
    config.samples.rows, config.samples.cols = 2, 3
    return config


def test_gan_task_end_to_end(tmp_path):
    workdir = str(tmp_path / "gan")
    results = run(small_config(), workdir, print_fn=None)
    assert sorted(os.listdir(os.path.join(workdir, "samples"))) == ["epoch_001.png", "epoch_002.png"]
    grid = matplotlib.image.imread(os.path.join(workdir, "samples", "epoch_002.png"))
    assert grid.shape[:2] == (2 * 30 - 2, 3 * 30 - 2)                   # 28 px images, 2 px gaps
    with open(os.path.join(workdir, "history.json")) as f:
        history = json.load(f)
    assert set(history) == {"d_loss", "g_loss", "d_real", "d_fake"} and all(len(v) == 2 for v in history.values())
    assert np.all(np.isfinite(history["d_loss"] + history["g_loss"]))
    assert results["train_examples"] == 128 and results["epochs"] == 2
    assert 0 < results["train_seconds"] <= results["wall_seconds"]  # the fit calls' time, within the run's
    experiment, generator = load_gan(workdir)                           # the final checkpoint reads back
    images = experiment.gan.generate(generator, experiment.gan.latent(jax.random.key(0), 5))
    assert images.shape == (5, 28, 28, 1) and images.min() >= 0.0 and images.max() <= 1.0


@pytest.mark.parametrize("path,value,match", [
    ("model.latent_dim", 0, "model.latent_dim must be a positive integer, got 0"),
    ("train.epochs", 0, "train.epochs must be a positive integer, got 0"),
    ("train.epoch", 3, "unknown field train.epoch; allowed: epochs, batch_size, max_examples"),
    ("train.batch_size", 1000, "train.batch_size must be at most the 128 training images, got 1000"),
    ("samples.rows", -1, "samples.rows must be a positive integer, got -1"),
    ("dataset.name", "imdb_reviews", "dataset.name must be one of fashion_mnist, mnist, got 'imdb_reviews'"),
    ("optimizer.generator", {"name": "adamm"}, "optimizer.generator: unknown optimizer 'adamm'"),
    ("optimizer.discriminator", None, "optimizer.discriminator must be an optimizer section"),
    ("model.discriminator.layers", [{"type": "Flatten"}, {"type": "Dense", "units": 3}],
     r"model: discriminator outputs \(None, 3\), it must give one logit per image"),
    ("model.generator.name", "resnet", "model.generator: unknown model 'resnet'"),
    ("sample", {}, "unknown config section 'sample'"),
])
def test_bad_gan_fields_stop_before_any_file(path, value, match, tmp_path):
    config = set_field(small_config(), path, value)
    workdir = tmp_path / "gan"
    with pytest.raises(ValueError, match=match) as info:
        run(config, str(workdir), print_fn=None)
    assert "\n" not in str(info.value) and not workdir.exists()
