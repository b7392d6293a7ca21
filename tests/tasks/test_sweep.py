"""Sweeps: the `sweep` section's members and checks, the ensemble's results, and a classify run of 4 members."""
import json
import types

import jax
import matplotlib.image
import numpy as np
import pytest

import jaxnn
from config_files import load_config, set_field
from jaxnn import sweep
from jaxnn.config import build, build_optimizer, fingerprint
from jaxnn.runner import run
from jaxnn.tasks.common import check_sections
from jaxnn.tasks.ensemble import ensemble_metrics, ensemble_outputs
from jaxnn.training.history import History, plot_history
from jaxnn.training.trainer import Trainer


def seed_config(**sweep_fields):
    config = load_config("fashion_mnist_seed")
    for name, value in sweep_fields.items():
        set_field(config, f"sweep.{name}", value)
    return config


def test_members_cross_the_seeds_with_each_list_seeds_outermost():
    options = sweep.sweep_options(seed_config(seeds=2, learning_rate=(1e-3, 3e-3)))
    assert sweep.members(options, 5) == [
        {"seed": 5, "hyperparams": {"learning_rate": 1e-3}}, {"seed": 5, "hyperparams": {"learning_rate": 3e-3}},
        {"seed": 6, "hyperparams": {"learning_rate": 1e-3}}, {"seed": 6, "hyperparams": {"learning_rate": 3e-3}}]
    assert sweep.member_hyperparams(sweep.members(options, 5)) == {"learning_rate": [1e-3, 3e-3, 1e-3, 3e-3]}
    seeds_only = sweep.members(sweep.sweep_options(seed_config(seeds=3)), 0)
    assert seeds_only == [{"seed": s, "hyperparams": {}} for s in range(3)]
    assert sweep.member_hyperparams(seeds_only) is None


def test_build_gives_the_members_and_a_settable_learning_rate():
    experiment = build(seed_config(seeds=2, learning_rate=(1e-3, 3e-3)))
    assert [(m["seed"], m["hyperparams"]["learning_rate"]) for m in experiment.members] == \
        [(0, 1e-3), (0, 3e-3), (1, 1e-3), (1, 3e-3)]
    # The seed config's constant schedule is its plain rate; left out, the rate is injected as a settable value.
    tx = experiment.optimizer(100)
    state = tx.init({"w": np.zeros(3, np.float32)})
    assert jaxnn.optimizers.settable_hyperparams(state) == ("learning_rate",)
    assert build(seed_config()).members == ()


def test_only_a_real_sweep_enters_the_fingerprint():
    plain = load_config("fashion_mnist_seed")
    with plain.unlocked():
        del plain["sweep"]
    assert fingerprint(seed_config()) == fingerprint(plain)  # the shipped default sweeps nothing
    assert fingerprint(seed_config(seeds=2))["sweep"] == {"seeds": 2, "learning_rate": []}


@pytest.mark.parametrize("fields,match", [
    (dict(seeds=0), r"^sweep.seeds must be a positive integer, got 0$"),
    (dict(learning_rate=(1e-3, "fast")), r"^sweep.learning_rate must be a list of numbers, e\.g\. \[1e-3, 3e-3\]"),
    (dict(learning_rate=(-1.0,)), r"^sweep.learning_rate -1.0: rmsprop learning_rate must be a positive"),
    (dict(momentum=(0.9,)), r"^sweep.momentum must be a hyperparameter the optimizer injects without a schedule: "
                            r"learning_rate, got 'momentum'$"),
])
def test_bad_sweeps_are_named_in_one_line(fields, match):
    with pytest.raises(ValueError, match=match):
        build(seed_config(**fields))


@pytest.mark.parametrize("value,shown", [(1e-3, "0.001"), ("1e-3", "'1e-3'"), (None, "None")])
def test_a_sweep_value_that_is_no_list_is_named(value, shown):
    with pytest.raises(ValueError, match=rf"^sweep.learning_rate must be a list of numbers, .*, got {shown}$"):
        build(set_field(seed_config(), "sweep", dict(seeds=2, learning_rate=value)))  # as a config file writes it


def test_a_seeds_sweep_keeps_a_warmup_schedule_and_takes_any_seed_jax_takes():
    config = set_field(seed_config(seeds=2), "optimizer.schedule", dict(name="warmup_cosine", warmup_steps=400))
    assert [m["seed"] for m in build(config).members] == [0, 1]  # checked for a long run, not one step
    assert [m["seed"] for m in build(set_field(config, "seed", -1)).members] == [-1, 0]
    with pytest.raises(ValueError, match=r"^seed must be an integer in \[-9223372036854775808, "
                                         r"9223372036854775806\], got 9223372036854775807$"):
        build(set_field(config, "seed", 2**63 - 1))


def test_a_sweep_of_streamed_data_is_refused_before_any_data():
    config = set_field(seed_config(seeds=2), "dataset.in_memory", False)
    with pytest.raises(ValueError, match=r"^dataset.in_memory must be True with a sweep"):
        build(config)


def test_a_swept_rate_under_a_real_schedule_is_refused():
    config = set_field(seed_config(learning_rate=(1e-3,)), "optimizer.schedule", dict(name="warmup_cosine"))
    with pytest.raises(ValueError, match="^sweep.learning_rate must be a hyperparameter the optimizer injects "
                                         "without a schedule: none, got 'learning_rate'$"):
        build(config)


def test_largest_gradients_and_several_devices_are_refused():
    config = set_field(seed_config(seeds=2), "train.per_example", dict(list_largest=5))
    with pytest.raises(ValueError, match=r"^train.per_example.list_largest must be 0 with a sweep"):
        build(config)
    mesh = types.SimpleNamespace(devices=np.empty((2, 1)), shape={"data": 2, "fsdp": 1})
    with pytest.raises(ValueError, match=r"^a sweep trains its members on one device, but the mesh "
                                         r"\{'data': 2, 'fsdp': 1\} spans 2: set mesh.data=1 and mesh.fsdp=1$"):
        sweep.check_sweep({"seeds": 2, "learning_rate": ()}, {"name": "adam"}, build_optimizer, {}, mesh)


def test_other_tasks_refuse_a_sweep():
    config = set_field(load_config("perceptron_and"), "sweep", dict(seeds=2))
    with pytest.raises(ValueError, match="^sweep trains the members of a classify run; task 'perceptron' takes "
                                         "no sweep section$"):
        check_sections(config, ("task", "seed", "dataset", "train"))


def test_ensemble_outputs_are_the_mean_probabilities_in_the_members_terms():
    logits = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    mean_probs = jax.nn.softmax(logits, axis=-1).mean(axis=0)
    np.testing.assert_allclose(ensemble_outputs(np.asarray(jax.nn.softmax(logits)), from_logits=False), mean_probs,
                               rtol=1e-6)
    np.testing.assert_allclose(jax.nn.softmax(ensemble_outputs(logits, from_logits=True)), mean_probs, rtol=1e-5)
    one_unit = logits[..., :1]
    np.testing.assert_allclose(jax.nn.sigmoid(ensemble_outputs(one_unit, from_logits=True)),
                               jax.nn.sigmoid(one_unit).mean(axis=0), rtol=1e-5)


def test_ensemble_metrics_match_the_formulas():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]], np.float32)
    labels = np.array([0, 2, 1, 1])
    trainer = Trainer(jaxnn.layers.Dense(3), loss="sparse_categorical_crossentropy", metrics=("accuracy",))
    got = ensemble_metrics(trainer, probs, labels)
    assert got["accuracy"] == 0.5
    assert got["loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(4), labels])), rel=1e-5)


def test_curves_draw_each_member_under_the_mean(tmp_path):
    members = [History({"loss": [1.0 + m, 0.5 + m], "val_loss": [1.2, 0.9]}, [0, 1]) for m in range(3)]
    fig = plot_history(History({"loss": [2.0, 1.5], "val_loss": [1.2, 0.9]}, [0, 1], members), tmp_path / "c.png")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 * 3 + 2  # train and validation per member, then the two means
    np.testing.assert_array_equal(lines[1].get_ydata(), [2.0, 1.5])  # member 1's own loss
    assert [line.get_label() for line in lines[-2:]] == ["loss (mean)", "val_loss (mean)"]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_sweep_run_writes_the_ensemble_and_each_member(tmp_path):
    config = seed_config(seeds=2, learning_rate=(1e-3, 3e-3))
    for path, value in (("dataset.train_split", "train[:1000]"), ("dataset.test_split", "test[:300]"),
                        ("train.epochs", 2), ("train.tensorboard", False)):
        set_field(config, path, value)
    results = run(config, str(tmp_path), print_fn=None)
    assert [(m["seed"], m["learning_rate"]) for m in results["members"]] == [(0, 1e-3), (0, 3e-3), (1, 1e-3),
                                                                              (1, 3e-3)]
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert 0 < results["train_seconds"] <= results["wall_seconds"]

    # Each member is a whole model; the ensemble's metrics are those of the mean of their probabilities.
    x, y = jaxnn.data.load_arrays("fashion_mnist", "test[:300]")
    probs = []
    for m, member in enumerate(results["members"]):
        model, variables = jaxnn.load_model(tmp_path / "model" / f"member_{m}")
        probs.append(np.asarray(model.apply(variables["params"], x, state=variables["model_state"])[0]))
        assert np.mean(probs[-1].argmax(axis=1) == y) == pytest.approx(member["test_accuracy"], abs=1e-6)
    ensemble = np.mean(probs, axis=0)
    assert results["test_accuracy"] == pytest.approx(np.mean(ensemble.argmax(axis=1) == y), abs=1e-6)
    assert results["test_loss"] == pytest.approx(-np.mean(np.log(ensemble[np.arange(300), y])), rel=1e-4)
    matrix = np.array(results["confusion_matrix"])
    assert np.trace(matrix) / 300 == pytest.approx(results["test_accuracy"], abs=1e-6)

    history = json.loads((tmp_path / "history.json").read_text())
    assert all(len(v) == 2 for v in history.values())  # the mean over members per epoch
    image = matplotlib.image.imread(tmp_path / "curves.png")
    assert image.ndim == 3 and image.std() > 0
    with pytest.raises(ValueError, match="is a sweep of 4 models; load one of them with load_model"):
        jaxnn.load_run(tmp_path)


def test_every_task_reports_its_time_inside_fit(tmp_path):
    results = run(load_config("perceptron_and"), str(tmp_path / "p"), print_fn=None)
    assert 0 < results["train_seconds"] <= results["wall_seconds"]
    results = run(load_config("xor_mlp"), str(tmp_path / "x"), print_fn=None)
    assert 0 < results["train_seconds"] <= results["wall_seconds"]
