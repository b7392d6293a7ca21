"""The privacy DP-SGD spent, as (epsilon, delta), from Google's `dp_accounting` (`pip install 'jaxnn[privacy]'`).

Each step is a sampled Gaussian mechanism: sampling rate batch_size / examples,
noise multiplier s (noise std over the clip norm); the steps compose. The
privacy-loss-distribution (PLD) accountant gives a tight epsilon for this
Poisson-sampled mechanism, as TF Privacy and Opacus report it. jaxnn's fit
draws fixed-size batches from a shuffle of each epoch instead of Poisson
sampling, so this epsilon is the customary figure, not a proven bound for
shuffled batches (Chua et al., 2024, https://arxiv.org/abs/2403.17673).
"""
from __future__ import annotations

import functools
import importlib.util

from jaxnn import validation


def accountant_installed() -> bool:
    """Whether `dp_accounting` is installed here."""
    return importlib.util.find_spec("dp_accounting") is not None


def dp_sgd_epsilon(noise_multiplier: float, batch_size: int, num_examples: int, steps: int,
                   delta: float | None = None) -> float:
    """Epsilon at `delta` (default 1 / num_examples) after `steps` DP-SGD steps; ImportError without dp_accounting.

        dp_sgd_epsilon(1.1, 256, 60000, 60 * 234, 1e-5)   # about 2.4 (PLD)
    """
    validation.positive_number("noise_multiplier", noise_multiplier)
    validation.positive_int("batch_size", batch_size)
    validation.positive_int("num_examples", num_examples)
    validation.non_negative_int("steps", steps)
    delta = 1.0 / num_examples if delta is None else delta
    validation.require("delta", delta, validation.is_number(delta) and 0 < delta < 1, "in (0, 1)")
    validation.require("batch_size", batch_size, batch_size <= num_examples, f"at most num_examples {num_examples}")
    from dp_accounting import dp_event
    from dp_accounting.pld import pld_privacy_accountant

    step = dp_event.PoissonSampledDpEvent(batch_size / num_examples, dp_event.GaussianDpEvent(noise_multiplier))
    accountant = pld_privacy_accountant.PLDAccountant()
    accountant.compose(dp_event.SelfComposedDpEvent(step, steps))
    return float(accountant.get_epsilon(delta))


def privacy_report(noise_multiplier: float, batch_size: int, num_examples: int, steps: int,
                   delta: float | None = None, members: int | None = None) -> dict:
    """What a run's results say about its privacy: epsilon and its inputs, or why epsilon is missing.

    An ensemble of `members` models trained on the same data releases them all: its epsilon composes the
    members' steps (`members * steps` mechanisms), and `epsilon_per_member` is what releasing one costs.
    """
    delta = 1.0 / num_examples if not delta else delta
    report = {"delta": delta, "noise_multiplier": noise_multiplier, "sampling_rate": batch_size / num_examples,
              "steps": steps, "accountant": "dp_accounting PLD, Poisson-sampled Gaussian"}
    if members is not None:
        report["members"] = members
    if not accountant_installed():
        return {**report, "epsilon": None,
                "note": "epsilon not computed: dp_accounting is not installed (pip install 'jaxnn[privacy]')"}
    epsilon = functools.partial(dp_sgd_epsilon, noise_multiplier, batch_size, num_examples, delta=delta)
    if members is None:
        return {**report, "epsilon": epsilon(steps)}
    return {**report, "epsilon": epsilon(members * steps), "epsilon_per_member": epsilon(steps)}
