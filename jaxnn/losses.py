"""Loss functions `(targets, preds) -> per-example loss`, as in `keras.losses`.

Each returns one value per example (reduced over the class/feature axis only);
`reduce` turns those into a scalar with optional sample weights and `compute`
adds Keras's reductions and class weights. Losses on probabilities clip them to
[eps, 1 - eps] (Keras's eps = 1e-7) and losses with `from_logits=True` use
log-sum-exp forms, so neither gives NaN or inf, nor NaN gradients, for
saturated inputs.
"""
from __future__ import annotations

import functools
import inspect
import numbers

import jax
import jax.numpy as jnp
import optax

from jaxnn import validation
from jaxnn.registry import Registry

EPSILON = 1e-7
LOSSES: Registry = Registry("loss")
REDUCTIONS = ("mean", "sum", "sum_over_batch_size", "none")


def _check_options(label_smoothing: float = 0.0, delta: float = 1.0, blank_id: int = 0):
    """Reject option values outside their domain with a one-line ValueError."""
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    if not delta > 0:
        raise ValueError(f"huber delta must be > 0, got {delta!r}")
    validation.non_negative_int("ctc blank_id", blank_id)


def _match(targets, preds):
    """Targets shaped (batch,) against preds (batch, 1) get the trailing axis back."""
    targets = jnp.asarray(targets)
    if targets.ndim == preds.ndim - 1 and preds.shape[-1] == 1:
        targets = targets[..., None]
    if targets.shape != preds.shape:
        raise ValueError(f"targets shaped {targets.shape} do not match preds shaped {preds.shape}")
    return targets.astype(preds.dtype)


@LOSSES.register("mean_squared_error", aliases=("mse",))
def mean_squared_error(targets, preds):
    """mean((targets - preds)^2) over the last axis."""
    return jnp.mean(jnp.square(_match(targets, preds) - preds), axis=-1)


@LOSSES.register("mean_absolute_error", aliases=("mae",))
def mean_absolute_error(targets, preds):
    """mean(|targets - preds|) over the last axis."""
    return jnp.mean(jnp.abs(_match(targets, preds) - preds), axis=-1)


@LOSSES.register("huber", aliases=("huber_loss",))
def huber(targets, preds, *, delta: float = 1.0):
    """Quadratic 0.5 e^2 for |e| <= delta, linear delta |e| - 0.5 delta^2 beyond; mean over the last axis."""
    _check_options(delta=delta)
    return jnp.mean(optax.huber_loss(preds, _match(targets, preds), delta=delta), axis=-1)


@LOSSES.register("binary_crossentropy", aliases=("bce",))
def binary_crossentropy(targets, preds, *, from_logits: bool = False, label_smoothing: float = 0.0):
    """-(t log p + (1 - t) log(1 - p)), averaged over the last axis.

    `label_smoothing` squeezes targets towards 0.5: t (1 - s) + s / 2, as Keras.
    """
    _check_options(label_smoothing=label_smoothing)
    targets = _match(targets, preds)
    targets = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        return jnp.mean(optax.sigmoid_binary_cross_entropy(preds, targets), axis=-1)
    p = jnp.clip(preds, EPSILON, 1.0 - EPSILON)
    return -jnp.mean(targets * jnp.log(p) + (1.0 - targets) * jnp.log1p(-p), axis=-1)


def _log_probs(preds, from_logits: bool):
    """log p over the last axis from logits (log-softmax) or from (renormalised, clipped) probabilities."""
    if from_logits:
        return jax.nn.log_softmax(preds, axis=-1)
    p = preds / jnp.sum(preds, axis=-1, keepdims=True)
    return jnp.log(jnp.clip(p, EPSILON, 1.0 - EPSILON))


@LOSSES.register("categorical_crossentropy", aliases=("cce",))
def categorical_crossentropy(targets, preds, *, from_logits: bool = False, label_smoothing: float = 0.0):
    """-sum(t log p) over the last axis; targets are one-hot (or soft) labels.

    `label_smoothing` s mixes targets with the uniform distribution: t (1 - s) + s / num_classes.
    """
    _check_options(label_smoothing=label_smoothing)
    targets = jnp.asarray(targets, preds.dtype)
    if targets.shape != preds.shape:
        raise ValueError(
            f"categorical_crossentropy needs one-hot targets shaped like preds {preds.shape}, "
            f"got {targets.shape}; use sparse_categorical_crossentropy for integer labels"
        )
    targets = targets * (1.0 - label_smoothing) + label_smoothing / preds.shape[-1]
    return -jnp.sum(targets * _log_probs(preds, from_logits), axis=-1)


@LOSSES.register("sparse_categorical_crossentropy", aliases=("scce",))
def sparse_categorical_crossentropy(labels, preds, *, from_logits: bool = False, label_smoothing: float = 0.0):
    """-log p[label]; `labels` are integer class ids shaped like preds without its last axis.

    `label_smoothing` gives the same loss as categorical_crossentropy on the
    smoothed one-hot labels (Keras has no smoothing here; PyTorch's
    CrossEntropyLoss does).
    """
    _check_options(label_smoothing=label_smoothing)
    labels = jnp.asarray(labels)
    if labels.ndim == preds.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != preds.shape[:-1]:
        one_hot = ", shaped like the outputs: for one-hot targets use categorical_crossentropy" * (
            labels.shape == preds.shape)
        raise ValueError(
            f"sparse_categorical_crossentropy needs integer labels shaped {preds.shape[:-1]}, got {labels.shape}{one_hot}"
        )
    log_p = _log_probs(preds, from_logits)
    nll = -jnp.take_along_axis(log_p, labels.astype(jnp.int32)[..., None], axis=-1)[..., 0]
    if label_smoothing == 0.0:
        return nll
    return (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(log_p, axis=-1)


@LOSSES.register("kl_divergence", aliases=("kld", "kullback_leibler_divergence"))
def kl_divergence(targets, preds):
    """sum(t log(t / p)) over the last axis; preds clipped to [eps, 1], targets of 0 contribute 0.

    Keras also clips targets to eps; the difference is below 1e-5.
    """
    targets = _match(targets, preds)
    return optax.kl_divergence(jnp.log(jnp.clip(preds, EPSILON, 1.0)), targets)


def _hinge_targets(targets, preds):
    """Targets in {-1, 1}; binary 0 becomes -1 as in Keras (per element, so no example depends on another)."""
    targets = _match(targets, preds)
    return jnp.where(targets == 0, -1.0, targets)


@LOSSES.register("hinge")
def hinge(targets, preds):
    """mean(max(1 - t * y, 0)) over the last axis; targets in {-1, 1} or {0, 1}."""
    return jnp.mean(jax.nn.relu(1.0 - _hinge_targets(targets, preds) * preds), axis=-1)


@LOSSES.register("squared_hinge")
def squared_hinge(targets, preds):
    """mean(max(1 - t * y, 0)^2) over the last axis; targets in {-1, 1} or {0, 1}."""
    return jnp.mean(jnp.square(jax.nn.relu(1.0 - _hinge_targets(targets, preds) * preds)), axis=-1)


@LOSSES.register("ctc")
def ctc(labels, logits, *, blank_id: int = 0):
    """Connectionist temporal classification loss -log p(labels | logits), via `optax.ctc_loss`.

    `labels` (batch, max_label_length) are integer class ids, right-padded with
    `blank_id` or negative values (Keras pads with 0, its blank). `logits`
    (batch, frames, num_classes) are unnormalised and every frame counts, as in
    Keras's `ctc`; for per-example frame lengths call `optax.ctc_loss` with
    `logit_paddings`. Class `blank_id` is the blank and must not appear as a label.
    """
    _check_options(blank_id=blank_id)
    labels = jnp.asarray(labels)
    if labels.ndim != 2 or logits.ndim != 3 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"ctc needs labels (batch, max_label_length) and logits (batch, frames, classes), "
            f"got {labels.shape} and {logits.shape}"
        )
    label_paddings = ((labels == blank_id) | (labels < 0)).astype(logits.dtype)
    logit_paddings = jnp.zeros(logits.shape[:2], logits.dtype)
    return optax.ctc_loss(logits, logit_paddings, jnp.maximum(labels, 0).astype(jnp.int32),
                          label_paddings, blank_id=blank_id)


# The least total weight a weighted mean divides by: a batch of weight 0 has mean 0, not 0/0.
MIN_TOTAL_WEIGHT = 1e-12


def reduce(per_example, weights=None):
    """Weighted mean of per-example losses (plain mean without weights)."""
    if weights is None:
        return jnp.mean(per_example)
    weights = jnp.broadcast_to(jnp.asarray(weights, per_example.dtype), per_example.shape)
    return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), MIN_TOTAL_WEIGHT)


def _unbound(loss_fn):
    """The loss function itself, options bound by `get` (a functools.partial) or not."""
    return loss_fn.func if isinstance(loss_fn, functools.partial) else loss_fn


def is_cross_entropy(loss_fn) -> bool:
    """Whether `loss_fn` is one of the built-in cross-entropies: a classifier's loss, for which accuracy means
    something."""
    return _unbound(loss_fn) in (binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy)


def is_sparse_categorical(loss_fn) -> bool:
    """Whether `loss_fn` is the built-in sparse categorical cross-entropy (options bound or not)."""
    return _unbound(loss_fn) is sparse_categorical_crossentropy


def class_weights(targets, class_weight: dict) -> jax.Array:
    """Per-example weights `class_weight[class]` (1 for classes not in the dict), as Keras's `fit(class_weight=)`.

    The class is the target itself for integer labels (batch,) or (batch, 1),
    rounded for binary 0/1 targets, and the argmax for one-hot targets (batch, C).
    """
    if not class_weight or not all(isinstance(c, numbers.Integral) and c >= 0 for c in class_weight):
        raise ValueError(f"class_weight must be a non-empty dict from class ids (ints >= 0) to weights, got {class_weight!r}")
    targets = jnp.asarray(targets)
    if targets.ndim > 1 and targets.shape[-1] > 1:
        classes = jnp.argmax(targets, axis=-1)
    else:
        classes = jnp.round(targets.reshape(targets.shape[0])).astype(jnp.int32)
    table = jnp.asarray([class_weight.get(c, 1.0) for c in range(int(max(class_weight)) + 1)], jnp.float32)
    known = (classes >= 0) & (classes < table.shape[0])
    return jnp.where(known, table[jnp.clip(classes, 0, table.shape[0] - 1)], 1.0)


def _expand_to(weights, per_example):
    """Per-example weights (batch,) given trailing axes to broadcast against `per_example` (batch, ...)."""
    weights = jnp.asarray(weights, per_example.dtype)
    return weights.reshape(weights.shape + (1,) * (per_example.ndim - weights.ndim))


def compute(loss, targets, preds, *, sample_weight=None, class_weight: dict | None = None,
            reduction: str = "mean"):
    """Loss `loss` (a name or callable) reduced to a scalar, with sample and class weights.

    reduction: "mean" is the weighted mean sum(w l) / sum(w) (zero-weight padding
    does not count); "sum_over_batch_size" is Keras's default sum(w l) / size;
    "sum" is sum(w l); "none" returns the weighted per-example losses w l.

    >>> compute("sparse_categorical_crossentropy", labels, logits, class_weight={0: 1.0, 1: 5.0})
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    per_example = get(loss)(targets, preds)
    weights = jnp.ones_like(per_example)
    if sample_weight is not None:
        weights = weights * _expand_to(sample_weight, per_example)
    if class_weight is not None:
        weights = weights * _expand_to(class_weights(targets, class_weight), per_example)
    if reduction == "mean":
        return reduce(per_example, weights)
    weighted = per_example * weights
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return jnp.sum(weighted)
    return jnp.sum(weighted) / weighted.size


def to_categorical(labels, num_classes: int | None = None, dtype=jnp.float32):
    """One-hot encode integer labels (Keras's `to_categorical`)."""
    labels = jnp.asarray(labels)
    if num_classes is None:
        num_classes = int(jnp.max(labels)) + 1
    return jax.nn.one_hot(labels, num_classes, dtype=dtype)


def get(spec, **options):
    """A per-example loss from a name (with options such as `from_logits=True`) or a callable.

    Unknown options and option values outside their domain raise ValueError here,
    before any data is seen.
    """
    fn = spec if callable(spec) else LOSSES.get(spec)
    if not options:
        return fn
    allowed = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r} for loss {getattr(fn, '__name__', fn)!r}; allowed: {', '.join(allowed) or 'none'}"
        )
    checked = inspect.signature(_check_options).parameters
    _check_options(**{k: v for k, v in options.items() if k in checked})
    return functools.partial(fn, **options)


def names() -> list[str]:
    """Every registered loss name (aliases included)."""
    return LOSSES.names()
