"""The privacy spent: dp_accounting's epsilon against the Gaussian mechanism's exact one, and without the library."""
import numpy as np
import pytest
from scipy import optimize, stats

from jaxnn.training import privacy

pytest.importorskip("dp_accounting")


def gaussian_mechanism_epsilon(sigma, delta):
    """Exact epsilon of the Gaussian mechanism with sensitivity 1 and noise std sigma at delta
    (Balle & Wang 2018, Theorem 8: delta(eps) = Phi(1/(2 sigma) - eps sigma) - e^eps Phi(-1/(2 sigma) - eps sigma))."""
    phi = stats.norm.cdf
    gap = lambda eps: phi(0.5 / sigma - eps * sigma) - np.exp(eps) * phi(-0.5 / sigma - eps * sigma) - delta
    return optimize.brentq(gap, 0, 100)


@pytest.mark.parametrize("sigma,steps", [(1.0, 1), (4.0, 16)])
def test_full_batch_steps_compose_to_the_exact_gaussian_mechanism(sigma, steps):
    # Sampling rate 1: T steps of noise sigma are one Gaussian mechanism of noise sigma / sqrt(T).
    epsilon = privacy.dp_sgd_epsilon(sigma, 100, 100, steps, 1e-5)
    np.testing.assert_allclose(epsilon, gaussian_mechanism_epsilon(sigma / np.sqrt(steps), 1e-5), rtol=1e-4)


def test_sampling_and_steps_move_epsilon_the_right_way():
    base = privacy.dp_sgd_epsilon(1.1, 256, 60000, 1000)
    assert privacy.dp_sgd_epsilon(1.1, 128, 60000, 1000) < base < privacy.dp_sgd_epsilon(1.1, 256, 60000, 2000)
    assert privacy.dp_sgd_epsilon(1.1, 256, 60000, 1000, 1e-3) < base  # default delta 1/60000


def test_report_says_why_epsilon_is_missing(monkeypatch):
    report = privacy.privacy_report(1.0, 32, 1000, 50)
    assert report["delta"] == 1e-3 and report["sampling_rate"] == 0.032 and report["epsilon"] > 0
    monkeypatch.setattr(privacy, "accountant_installed", lambda: False)
    report = privacy.privacy_report(1.0, 32, 1000, 50, 1e-5)
    assert report["epsilon"] is None and "dp_accounting is not installed" in report["note"]


def test_an_ensemble_composes_its_members_steps():
    report = privacy.privacy_report(1.0, 32, 1000, 50, members=4)
    assert report["members"] == 4 and report["steps"] == 50
    assert report["epsilon_per_member"] == privacy.dp_sgd_epsilon(1.0, 32, 1000, 50)
    assert report["epsilon"] == privacy.dp_sgd_epsilon(1.0, 32, 1000, 200) > report["epsilon_per_member"]


@pytest.mark.parametrize("args,match", [
    ((0.0, 32, 1000, 10), "noise_multiplier must be a positive number, got 0.0"),
    ((1.0, 2000, 1000, 10), "batch_size must be at most num_examples 1000, got 2000"),
    ((1.0, 32, 1000, 10, 1.5), r"delta must be in \(0, 1\), got 1.5"),
])
def test_bad_arguments_raise_one_line(args, match):
    with pytest.raises(ValueError, match=match):
        privacy.dp_sgd_epsilon(*args)
