"""The train/optimizer/checkpoint config sections: defaults, bad fields named, schedules sized to the run,
and the fingerprint that decides whether a workdir's checkpoints belong to this run."""

import numpy as np
import pytest

from jaxnn import optimizers
from jaxnn.config import CHECKPOINT_DEFAULTS, TRAIN_DEFAULTS, build, fingerprint
from jaxnn.tasks.classify import build_trainer
from config_files import load_config, set_field





def test_configs_without_the_new_fields_get_the_defaults():
    config = load_config("fashion_mnist_mlp")
    with config.unlocked():
        config.train = {"epochs": 2, "batch_size": 64}
        config.checkpoint = {}
    experiment = build(config)
    assert experiment.train == {**TRAIN_DEFAULTS, "epochs": 2, "batch_size": 64}
    assert experiment.checkpoint == {**CHECKPOINT_DEFAULTS, "monitor": "loss"}  # no validation: no val_loss
    trainer = build_trainer(experiment, total_steps=1)
    assert trainer.policy.name == "float32" and trainer.accumulate_steps == 1


@pytest.mark.parametrize("path,value,match", [
    ("train.acumulate_steps", 2, "unknown field train.acumulate_steps; allowed: epochs, batch_size, validation_split"),
    ("train.early_stopping.patiense", 2, "unknown field train.early_stopping.patiense; allowed: enabled, monitor"),
    ("checkpoint.every", 10, "unknown field checkpoint.every; allowed: save_final, every_steps"),
    ("train.accumulate_steps", 3, "train.batch_size 128 must be a multiple of train.accumulate_steps 3"),
    ("train.precision", "float16", "train.precision must be one of float32, mixed_bfloat16, mixed_float16, "
                                   "got 'float16'"),
    ("train.log_every_steps", 0, "train.log_every_steps must be a positive integer, got 0"),
    ("checkpoint.every_steps", -5, "checkpoint.every_steps must be a non-negative integer, got -5"),
    ("checkpoint.keep", 0, "checkpoint.keep must be a positive integer, got 0"),
    ("optimizer.schedule", {"name": "cosine"}, "unknown schedule 'cosine'; known: constant"),
    ("optimizer.global_clipnorm", -1.0, "global_clipnorm must be positive, got -1.0"),
])
def test_bad_fields_are_named(path, value, match):
    with pytest.raises(ValueError, match=match):
        build(set_field(load_config("fashion_mnist_mlp"), path, value))


def test_the_schedule_spans_the_run_and_options_reach_the_trainer():
    config = load_config("fashion_mnist_mlp")
    set_field(config, "optimizer.schedule", {"name": "warmup_cosine", "warmup_steps": 10})
    set_field(config, "optimizer.global_clipnorm", 1.0)
    set_field(config, "train.precision", "mixed_bfloat16")
    set_field(config, "train.accumulate_steps", 4)
    set_field(config, "train.check_finite", True)
    trainer = build_trainer(build(config), total_steps=100)
    assert (trainer.policy.name, trainer.accumulate_steps, trainer.check_finite) == ("mixed_bfloat16", 4, True)
    params = {"w": np.ones(2, np.float32)}
    state = trainer.tx.init(params)
    rates = []
    for _ in range(100):
        _, state = trainer.tx.update(params, state, params)
        rates.append(float(optimizers.learning_rate(state)))
    assert rates[10] == pytest.approx(1e-3) and rates[-1] < 1e-6  # peak after warm-up, ~0 at the run's end


def test_the_fingerprint_ignores_what_does_not_change_the_numbers():
    base = fingerprint(load_config("fashion_mnist_mlp"))
    for path, value in [("checkpoint.every_steps", 7), ("eval.batch_size", 10), ("train.log_every_steps", 3),
                        ("train.tensorboard", False), ("dataset.data_dir", "/elsewhere")]:
        assert fingerprint(set_field(load_config("fashion_mnist_mlp"), path, value)) == base, path
    for path, value in [("optimizer.learning_rate", 0.01), ("train.epochs", 3), ("seed", 1),
                        ("train.accumulate_steps", 2)]:
        assert fingerprint(set_field(load_config("fashion_mnist_mlp"), path, value)) != base, path
