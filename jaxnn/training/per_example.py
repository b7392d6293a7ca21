"""Per-example gradients inside the train step: DP-SGD clipping and noise, and gradient-norm quantiles.

`PerExample(clip_norm=C, noise_multiplier=s)` makes the train step compute one
gradient per example (`jax.vmap(jax.grad(...))` over the batch), clip each to
global norm C, sum them, add Gaussian noise of std s*C and divide by the
batch's total weight before the optimizer update: DP-SGD (Abadi et al., 2016,
https://arxiv.org/abs/1607.00133). `PerExample(quantiles=True)` also keeps a
histogram of the per-example gradient norms (before clipping) so that each
epoch's History gets their 50/90/99th percentiles and maximum.

The histogram has log-spaced bins from 1e-6 to 1e6 (2.7% wide), so the
quantiles are exact to within a bin; a running sum of counts is what the fit
loop can add step by step, where a sorted list of all norms could not be.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import validation
from jaxnn.models.children import has_frozen, trainable_mask

# Log-spaced norm histogram: NORM_BINS bins over [10**LOG10_MIN, 10**LOG10_MAX]; norms outside go to the end bins.
NORM_BINS, LOG10_MIN, LOG10_MAX = 1024, -6.0, 6.0
QUANTILES = {"grad_norm_p50": 0.5, "grad_norm_p90": 0.9, "grad_norm_p99": 0.99, "grad_norm_max": 1.0}
HISTOGRAM_KEY = "grad_norm"
LIST_BY = ("norm", "loss")  # how the largest-gradient listing ranks the training examples


@dataclasses.dataclass(frozen=True)
class PerExample:
    """Options of per-example gradients: `clip_norm` (0: no clipping), `noise_multiplier` (noise std over
    `clip_norm`; needs clipping), `quantiles` (log the norm quantiles per epoch)."""

    clip_norm: float = 0.0
    noise_multiplier: float = 0.0
    quantiles: bool = False

    def __post_init__(self):
        for field in ("clip_norm", "noise_multiplier"):
            value = getattr(self, field)
            validation.require(f"per_example.{field}", value, validation.is_number(value) and 0 <= value < np.inf,
                               "a finite number >= 0")
        validation.require("per_example.quantiles", self.quantiles, isinstance(self.quantiles, bool), "True or False")
        if self.noise_multiplier and not self.clip_norm:
            raise ValueError(f"per_example.noise_multiplier {self.noise_multiplier!r} needs per_example.clip_norm > 0 "
                             f"(the noise std is noise_multiplier * clip_norm)")
        if not (self.clip_norm or self.quantiles):
            raise ValueError("per_example needs clip_norm > 0 or quantiles=True (otherwise leave it out)")

    @classmethod
    def from_options(cls, options: dict) -> PerExample | None:
        """A config's `train.per_example` checked (its `delta`, `list_largest` and `list_by` too, which the task reads):
        None when neither clipping nor quantiles is asked for."""
        delta, largest = options.get("delta", 0.0), options.get("list_largest", 0)
        validation.require("train.per_example.delta", delta, validation.is_number(delta) and 0 <= delta < 1,
                           "a number in [0, 1) (0: 1 / training examples)")
        validation.non_negative_int("train.per_example.list_largest", largest)
        by = options.get("list_by", "norm")
        validation.require("train.per_example.list_by", by, by in LIST_BY, " or ".join(map(repr, LIST_BY)))
        chosen = {f.name: options[f.name] for f in dataclasses.fields(cls) if f.name in options}
        if chosen.get("clip_norm") or chosen.get("quantiles") or chosen.get("noise_multiplier"):
            return cls(**chosen)  # noise without clipping raises here
        return None

    @property
    def log_keys(self) -> tuple[str, ...]:
        """The History keys this adds."""
        return tuple(QUANTILES) if self.quantiles else ()


def as_per_example(value) -> PerExample | None:
    """The Trainer's `per_example` option: None, a PerExample, or a dict of its fields (an unknown one named)."""
    if value is None or isinstance(value, PerExample):
        return value
    validation.require("per_example", value, isinstance(value, dict), "None, a PerExample or a dict of its fields")
    allowed = [f.name for f in dataclasses.fields(PerExample)]
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ValueError(f"unknown field per_example.{unknown[0]}; allowed: {', '.join(allowed)}")
    return PerExample(**value)


def refuse_model_state(model_state) -> None:
    """Per-example gradients need a model without batch statistics: one line naming the first stateful layer."""
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(model_state)[0]]
    if paths:
        raise ValueError(f"per-example gradients do not work with BatchNormalization (state {paths[0]}): each example "
                         f"would be normalized by its own statistics, not the batch's; use LayerNormalization or no "
                         f"normalization with per_example")


def trainable_only(model, grads):
    """Per-example `grads` with the leaves of `trainable=False` layers zeroed: the optimizer never applies them,
    so they must not count in an example's norm (its clipping, its quantile)."""
    if not has_frozen(model):
        return grads
    keep = trainable_mask(model, grads)
    return jax.tree_util.tree_map(lambda g, k: g if k else jnp.zeros_like(g), grads, keep)


def example_norms(grads) -> jax.Array:
    """Global L2 norm of each example's gradient (leading axis = example)."""
    squares = [jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=1) for g in jax.tree_util.tree_leaves(grads)]
    return jnp.sqrt(sum(squares))


def clipped_sum(grads, norms, clip_norm: float | None):
    """Sum over examples of each gradient scaled to norm <= `clip_norm` (plain sum when None)."""
    # A dot with the factors even without clipping: XLA on CPU sums over the example axis far slower than it dots.
    factor = (jnp.ones_like(norms) if clip_norm is None
              else jnp.minimum(1.0, clip_norm / jnp.maximum(norms, jnp.finfo(norms.dtype).tiny)))
    return jax.tree_util.tree_map(lambda g: jnp.tensordot(factor.astype(g.dtype), g, axes=1), grads)


def gaussian_noise(key: jax.Array, like, std: float):
    """Independent N(0, std^2) noise shaped like each array of `like`."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([std * jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])


def norm_histogram(norms, weights=None) -> jax.Array:
    """Counts of `norms` in the log-spaced bins, one per example of weight > 0 (a norm already includes its
    example's weight, the gradient being of the weighted loss: counting it `weight` times would count it twice)."""
    position = (jnp.log10(jnp.maximum(norms, 1e-30)) - LOG10_MIN) / (LOG10_MAX - LOG10_MIN) * NORM_BINS
    index = jnp.clip(jnp.floor(position), 0, NORM_BINS - 1).astype(jnp.int32)
    counts = jnp.ones_like(norms, jnp.float32) if weights is None else (jnp.asarray(weights) > 0).astype(jnp.float32)
    return jnp.zeros(NORM_BINS, jnp.float32).at[index].add(counts)


def zero_histogram() -> np.ndarray:
    """An epoch's starting histogram, on the host as the other zero statistics are."""
    return np.zeros(NORM_BINS, np.float32)


def norm_quantiles(counts) -> dict[str, float]:
    """The History's quantiles from summed histogram counts (host side): each the geometric centre of its bin."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        return {key: float("nan") for key in QUANTILES}
    cumulative = np.cumsum(counts)
    out = {}
    for key, q in QUANTILES.items():
        index = int(np.searchsorted(cumulative, q * total)) if q < 1 else int(np.nonzero(counts)[0][-1])
        out[key] = float(10 ** (LOG10_MIN + (index + 0.5) * (LOG10_MAX - LOG10_MIN) / NORM_BINS))
    return out
