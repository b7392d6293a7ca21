"""The classify task with `train.per_example`: DP-SGD with epsilon in the results, the norm quantiles in the
History, the largest-gradient listing in the workdir; bad fields and BatchNormalization stop before any I/O."""
import json

import pytest

from jaxnn.runner import run
from config_files import load_config




def small_config(**per_example):
    """The seed config on 1,000 training and 200 test images, one epoch, no TensorBoard."""
    config = load_config("fashion_mnist_seed")
    config.dataset.train_split, config.dataset.test_split = "train[:1000]", "test[:200]"
    config.train.epochs, config.train.tensorboard = 1, False
    config.train.per_example = per_example
    return config


@pytest.mark.slow
def test_dp_sgd_run_reports_epsilon_quantiles_and_the_largest_gradients(tmp_path):
    pytest.importorskip("dp_accounting")
    workdir = tmp_path / "run"
    results = run(small_config(clip_norm=1.0, noise_multiplier=1.1, quantiles=True, list_largest=6), str(workdir),
                  print_fn=None)
    privacy = results["privacy"]
    assert privacy["steps"] == 25 and privacy["sampling_rate"] == 32 / 800 and privacy["delta"] == 1 / 800
    assert 0 < privacy["epsilon"] < 100
    assert 0.1 < results["test_accuracy"] <= 1.0
    history = json.loads((workdir / "history.json").read_text())
    assert {"grad_norm_p50", "grad_norm_p90", "grad_norm_p99", "grad_norm_max"} <= set(history)
    rows = json.loads((workdir / "largest_gradients.json").read_text())
    assert len(rows) == 6 and all(0 <= r["index"] < 800 for r in rows)
    assert (workdir / "largest_gradients.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("config,match", [
    (small_config(clip_norm=-1.0), "per_example.clip_norm must be a finite number >= 0, got -1.0"),
    (small_config(quantiles=True, delta=2.0), r"train.per_example.delta must be a number in \[0, 1\)"),
    (small_config(quantiles=True, list_largest=-1), "train.per_example.list_largest must be a non-negative integer"),
    (small_config(quantiles=True, list_largest=5, list_by="grad"),
     "train.per_example.list_by must be 'norm' or 'loss', got 'grad'"),
    (small_config(clip=1.0), "unknown field train.per_example.clip; allowed: clip_norm, noise_multiplier"),
])
def test_bad_fields_stop_before_the_workdir_is_made(tmp_path, config, match):
    with pytest.raises(ValueError, match=match) as info:
        run(config, str(tmp_path / "run"), print_fn=None)
    assert "\n" not in str(info.value) and not (tmp_path / "run").exists()


def test_batch_normalization_is_refused_before_any_data_is_read(tmp_path):
    config = load_config("fashion_mnist_cnn_bn")
    config.train.per_example = dict(clip_norm=1.0)
    with pytest.raises(ValueError, match="per-example gradients do not work with BatchNormalization"):
        run(config, str(tmp_path / "run"), print_fn=None)
    assert not (tmp_path / "run").exists()
