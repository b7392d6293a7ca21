"""A GAN on an image dataset, from a config: sample grids per epoch, both losses in the history."""
from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import ml_collections
import numpy as np

from jaxnn.checkpoint import load_tree, save_tree
from jaxnn.config import build_model
from jaxnn.models import summary
from jaxnn.tasks.common import (TASKS, FitClock, check_sections, config_section, image_dataset, optimizer_section,
                                 phase_optimizer)
from jaxnn.tasks.gan_model import GAN, save_image_grid
from jaxnn.training.history import History, plot_history
from jaxnn.validation import non_negative_int, positive_int, require

_GAN_SECTIONS = ("task", "seed", "dataset", "model", "optimizer", "train", "samples")
_GAN_DATASET = {"name": "fashion_mnist", "data_dir": None, "train_split": "train"}


@dataclasses.dataclass(frozen=True)
class GANExperiment:
    """A checked GAN config: the `GAN`, the dataset and train fields, the sample grid, the seed."""

    gan: GAN
    image_shape: tuple
    dataset: dict
    train: dict
    samples: dict
    seed: int


def build_gan(config: ml_collections.ConfigDict) -> GANExperiment:
    """Check a GAN config (sections: `_GAN_SECTIONS`) and build its `GAN`; a bad field raises one ValueError line."""
    seed = check_sections(config, _GAN_SECTIONS)
    dataset = config_section(config, "dataset", _GAN_DATASET)
    info = image_dataset(dataset)
    model = config_section(config, "model", {"latent_dim": 100, "generator": None, "discriminator": None})
    positive_int("model.latent_dim", model["latent_dim"])
    players, optimizers = {}, config_section(config, "optimizer", {"generator": None, "discriminator": None})
    for side in ("generator", "discriminator"):
        spec = model[side]
        require(f"model.{side}", spec, isinstance(spec, (dict, ml_collections.ConfigDict)),
                 "a model section such as {'name': 'sequential', 'layers': [...]}")
        try:
            players[side] = build_model(dict(spec), 1)
        except ValueError as e:
            raise ValueError(f"model.{side}: {e}") from None
        options = optimizer_section(f"optimizer.{side}", optimizers[side])
        players[f"{side}_optimizer"] = phase_optimizer(f"optimizer.{side}", options)
    gan = GAN(latent_dim=model["latent_dim"], **players)
    try:
        gan.check_shapes(info.input_shape)
    except ValueError as e:
        raise ValueError(f"model: {e}") from None
    train = config_section(config, "train", {"epochs": None, "batch_size": 64, "max_examples": 0})
    positive_int("train.epochs", train["epochs"])
    positive_int("train.batch_size", train["batch_size"])
    non_negative_int("train.max_examples", train["max_examples"])
    samples = config_section(config, "samples", {"rows": 10, "cols": 10})
    positive_int("samples.rows", samples["rows"])
    positive_int("samples.cols", samples["cols"])
    return GANExperiment(gan, tuple(info.input_shape), dataset, train, samples, seed)


def load_gan(workdir: str) -> tuple[GANExperiment, dict]:
    """The experiment of a finished GAN run and its final generator (`params`, `model_state`), from `workdir`."""
    with open(os.path.join(workdir, "config.json")) as f:
        experiment = build_gan(ml_collections.ConfigDict(json.load(f)))
    like = jax.eval_shape(lambda: experiment.gan.init(jax.random.key(0), experiment.image_shape))
    players = {side: {"params": getattr(like, side).params, "model_state": getattr(like, side).model_state}
               for side in ("generator", "discriminator")}
    return experiment, load_tree(os.path.join(workdir, "checkpoints", "final"), like=players)["generator"]


@TASKS.register("gan")
def gan_task(config: ml_collections.ConfigDict, workdir: str, *, print_fn=print) -> tuple[dict, History]:
    """Train a GAN on the training images (scaled to [-1, 1]); a sample grid per epoch, both losses per epoch.

    Writes samples/epoch_001.png, epoch_002.png, ... (the same `samples.rows`
    x `samples.cols` latent vectors every epoch, so epochs compare),
    curves.png and checkpoints/final (generator and discriminator params and
    state); returns the results and the History (`d_loss`, `g_loss`,
    `d_real` = mean D(x), `d_fake` = mean D(G(z))).
    """
    from jaxnn import data

    started = time.perf_counter()
    experiment = build_gan(config)  # every config error surfaces here, before any I/O
    gan, train, samples, dataset = experiment.gan, experiment.train, experiment.samples, experiment.dataset
    images, _ = data.load_arrays(dataset["name"], dataset["train_split"], data_dir=dataset["data_dir"])
    if train["max_examples"]:
        images = images[:train["max_examples"]]
    require("train.batch_size", train["batch_size"], train["batch_size"] <= len(images),
             f"at most the {len(images)} training images")
    init_key, sample_key = jax.random.split(jax.random.key(experiment.seed))
    state = gan.init(init_key, experiment.image_shape)
    if print_fn is not None:
        for side in ("generator", "discriminator"):
            player, shape = getattr(state, side), (gan.latent_dim,) if side == "generator" else experiment.image_shape
            summary(getattr(gan, side), shape, params=player.params, state=player.model_state, print_fn=print_fn)
    fixed_latents = gan.latent(sample_key, samples["rows"] * samples["cols"])
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    epoch_seconds, tick = [], [time.perf_counter()]

    def on_epoch_end(epoch, state, logs):
        epoch_seconds.append(time.perf_counter() - tick[0])
        save_image_grid(gan.generate(state.generator, fixed_latents),
                        os.path.join(workdir, "samples", f"epoch_{epoch + 1:03d}.png"), samples["cols"])
        if print_fn is not None:
            print_fn(f"Epoch {epoch + 1}/{train['epochs']} - {epoch_seconds[-1]:.1f}s - "
                     + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        tick[0] = time.perf_counter()

    with FitClock() as clock:
        state, history = gan.fit(state, images * 2.0 - 1.0, epochs=train["epochs"], batch_size=train["batch_size"],
                                 on_epoch_end=on_epoch_end)
    save_tree(os.path.join(workdir, "checkpoints", "final"),
              {side: {"params": getattr(state, side).params, "model_state": getattr(state, side).model_state}
               for side in ("generator", "discriminator")})
    plot_history(history, os.path.join(workdir, "curves.png"))
    results = {**{k: v[-1] for k, v in history.history.items()}, "epochs": train["epochs"],
               "train_examples": int(len(images)), "median_epoch_seconds": round(float(np.median(epoch_seconds)), 2),
               "wall_seconds": round(time.perf_counter() - started, 4), "train_seconds": round(clock.seconds, 4)}
    return results, history
