"""Config validation: each bad field stops with one line naming it, before any data or file."""

import pytest

from jaxnn.config import build
from config_files import load_config, set_field




@pytest.mark.parametrize("name", ["fashion_mnist_mlp", "fashion_mnist_seed"])
def test_shipped_configs_build(name):
    experiment = build(load_config(name))
    assert experiment.train["epochs"] > 0


def test_seed_config_is_exactly_the_seed_model():
    import jax

    from jaxnn import summary

    experiment = build(load_config("fashion_mnist_seed"))
    text = summary(experiment.model, (28, 28, 1), print_fn=None)
    assert "Total params: 79,510" in text
    tx = experiment.optimizer(1)
    assert type(tx).__name__.startswith("GradientTransformation")
    assert experiment.train["validation_split"] == 0.2 and experiment.train["epochs"] == 5
    assert experiment.train["batch_size"] == 32
    del jax



@pytest.mark.parametrize("path,value,match", [
    ("model.layers", [{"type": "Dense2", "units": 3}], "unknown layer 'Dense2'; known: .*Dense"),
    ("model.layers", [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmx"}],
     "unknown activation 'softmx'"),
    ("model.layers", [{"type": "Dense", "units": 10, "activation": "softmax"}],
     r"targets of shape \(\) \(per example\) do not fit the model's output \(28, 28, 10\)"),
    ("loss.name", "crossentropy", "unknown loss 'crossentropy'; known: .*sparse_categorical_crossentropy"),
    ("optimizer.name", "adamm", "unknown optimizer 'adamm'; known: adam, adamw, rmsprop, sgd"),
    ("optimizer.learning_rat", 0.1, "unknown option.* learning_rat for optimizer 'rmsprop'"),
    ("train.epochs", 0, "train.epochs must be a positive integer, got 0"),
    ("train.batch_size", -32, "train.batch_size must be a positive integer, got -32"),
    ("train.validation_split", 1.0, r"train.validation_split must be in \[0, 1\), got 1.0"),
    ("dataset.name", "cifar11", "dataset.name must be one of .*fashion_mnist.*, got 'cifar11'"),
    ("train.metrics", ("accuracy", "acc2"), "unknown metric 'acc2'"),
])
def test_bad_fields_are_named(path, value, match):
    config = set_field(load_config("fashion_mnist_seed"), path, value)
    with pytest.raises(ValueError, match=match):
        build(config)


def test_unknown_model_field_lists_the_allowed_ones():
    config = set_field(load_config("fashion_mnist_mlp"), "model.hiden_units", (10,))
    with pytest.raises(ValueError, match="unknown field model.hiden_units; allowed: hidden_units, activation"):
        build(config)


def test_reduce_lr_on_plateau_takes_a_constant_schedule_and_names_a_real_one():
    import jax

    from jaxnn import optimizers

    config = set_field(load_config("fashion_mnist_seed"), "train.reduce_lr_on_plateau.enabled", True)
    experiment = build(config)  # the seed config's schedule=dict(name="constant") is the plain rate
    state = jax.eval_shape(experiment.optimizer(100).init, {"w": jax.ShapeDtypeStruct((3,), "float32")})
    assert optimizers.settable_hyperparams(state) == ("learning_rate",)
    set_field(config, "optimizer.schedule", dict(name="warmup_cosine", warmup_steps=10))
    with pytest.raises(ValueError, match=r"^train.reduce_lr_on_plateau.enabled must be False when the learning "
                                         r"rate follows a schedule \(optimizer.schedule \{'name': 'warmup_cosine', "
                                         r"'warmup_steps': 10\}\): the callback sets a constant rate, got True$"):
        build(config)


def test_overrides_add_the_optional_fields_and_sections_a_config_file_leaves_out():
    import pathlib
    import runpy

    from absl import flags

    from jaxnn import cli

    root = pathlib.Path(__file__).resolve().parents[1]
    train_py = runpy.run_path(str(root / "train.py"))
    argv = ["train.py", f"--config={root / 'configs' / 'fashion_mnist_seed.py'}", "--config.train.steps_per_dispatch=8",
            "--config.train.per_example={'clip_norm': 1.0, 'noise_multiplier': 1.1}"]
    flag_values = flags.FlagValues()
    defined = train_py["define_flags"](flag_values, argv)
    cli.parse_flags(flag_values, argv, default_config=train_py["DEFAULT_CONFIG"])
    train = build(defined["config"].value).train
    assert train["steps_per_dispatch"] == 8
    assert train["per_example"] == dict(clip_norm=1.0, noise_multiplier=1.1, quantiles=False, delta=0.0,
                                        list_largest=0, list_by="norm")
    # A config file that lists "auto" takes "8" from the command line as a string: it is the count 8.
    assert build(set_field(load_config("fashion_mnist_seed"), "train.steps_per_dispatch", "8")).train[
        "steps_per_dispatch"] == 8
