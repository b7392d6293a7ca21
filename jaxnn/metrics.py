"""Metrics as pure pairs: `update` gives summable statistics for a batch, `result` reads them.

Statistics are sums (never means), so adding them over batches of any size,
a padded last batch included (padding has weight 0), gives the exact value
over the whole set. Metric objects are frozen dataclasses (hashable, so a
jitted step can close over them) whose `name` keys their statistics.

    stats = metric.update(targets, preds, weights)      # per batch, a pytree of sums
    total = jax.tree_util.tree_map(jnp.add, total, stats)
    value = metric.result(total)
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import losses, validation
from jaxnn.registry import Registry

METRICS: Registry = Registry("metric")


def _weights(weights, n):
    return jnp.ones((n,), jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)


def _mean_stats(values, weights):
    """Weighted sum and weight total of per-example values (averaged over non-batch axes first)."""
    if values.ndim == 0:
        raise ValueError("per-example values need a batch axis, got a scalar; losses reduce the last axis, "
                         "so preds need a feature axis: (batch, 1) rather than (batch,)")
    values = values.reshape(values.shape[0], -1).mean(axis=-1)
    w = _weights(weights, values.shape[0])
    return {"total": jnp.sum(values * w), "count": jnp.sum(w)}


def _safe_div(num, den):
    """num / den, 0 where den is 0 (Keras's divide_no_nan). Host statistics (numpy, as the fit loop reads
    them) are divided by numpy, the same IEEE float32 division, without a device dispatch per operation."""
    xp = np if isinstance(num, np.ndarray | np.generic) and isinstance(den, np.ndarray | np.generic) else jnp
    return xp.where(den > 0, num / xp.where(den > 0, den, 1.0), 0.0)


def _mean_result(stats):
    return _safe_div(stats["total"], stats["count"])


def _check_threshold(metric: str, threshold: float):
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{metric} threshold must be in [0, 1], got {threshold!r}")


def _is_binary(preds) -> bool:
    return preds.ndim == 1 or preds.shape[-1] == 1


def _true_classes(targets, preds):
    """Integer class ids shaped preds.shape[:-1] from integer labels or one-hot targets."""
    targets = jnp.asarray(targets)
    if targets.shape == preds.shape:
        return jnp.argmax(targets, axis=-1)
    if targets.size != int(np.prod(preds.shape[:-1])):
        raise ValueError(
            f"targets shaped {targets.shape} are neither integer labels for preds {preds.shape} nor one-hot like them"
        )
    return targets.reshape(preds.shape[:-1]).astype(jnp.int32)


def _binary_pair(targets, preds, threshold: float):
    """(true, predicted) positives as 0/1 floats shaped (batch, -1): targets > 0.5, preds > threshold."""
    n = preds.shape[0]
    targets = jnp.asarray(targets)
    if targets.size != preds.size:
        raise ValueError(f"binary targets shaped {targets.shape} do not match preds shaped {preds.shape}")
    true = (targets.reshape(n, -1) > 0.5).astype(jnp.float32)
    return true, (preds.reshape(n, -1) > threshold).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Mean:
    """Weighted mean of a per-example value (the loss, say)."""

    name: str = "loss"

    def update(self, values, weights=None):
        """Sums of the weighted values and of the weights."""
        return _mean_stats(values, weights)

    def result(self, stats):
        """The weighted mean."""
        return _mean_result(stats)


@dataclasses.dataclass(frozen=True)
class MeanOf:
    """Weighted mean of a per-example function `fn(targets, preds)`, e.g. a loss used as a metric."""

    name: str
    fn: Callable

    def update(self, targets, preds, weights=None):
        """Sums of the weighted per-example values and of the weights."""
        return _mean_stats(self.fn(targets, preds), weights)

    def result(self, stats):
        """The weighted mean."""
        return _mean_result(stats)


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """Fraction of examples whose predicted class equals the target.

    Works out Keras's three cases from the shapes: integer labels against class
    scores, one-hot targets against class scores, and binary 0/1 targets against
    one probability (positive above 0.5).
    """

    name: str = "accuracy"

    def update(self, targets, preds, weights=None):
        """Sums of the weighted hits and of the weights."""
        if _is_binary(preds):
            true, predicted = _binary_pair(targets, preds, 0.5)
            return _mean_stats(true == predicted, weights)
        return _mean_stats(jnp.argmax(preds, axis=-1) == _true_classes(targets, preds), weights)

    def result(self, stats):
        """The weighted fraction of hits."""
        return _mean_result(stats)


@dataclasses.dataclass(frozen=True)
class BinaryAccuracy:
    """Fraction of entries where (preds > threshold) equals (targets > 0.5), averaged per example (multi-label too)."""

    name: str = "binary_accuracy"
    threshold: float = 0.5

    def __post_init__(self):
        _check_threshold("BinaryAccuracy", self.threshold)

    def update(self, targets, preds, weights=None):
        """Sums of the weighted per-example hit rates and of the weights."""
        true, predicted = _binary_pair(targets, preds, self.threshold)
        return _mean_stats(true == predicted, weights)

    def result(self, stats):
        """The weighted hit rate."""
        return _mean_result(stats)


@dataclasses.dataclass(frozen=True)
class TopKAccuracy:
    """Fraction of examples whose true class is among the k highest scores.

    Targets are integer labels (Keras's sparse_top_k_categorical_accuracy) or
    one-hot (top_k_categorical_accuracy); as in Keras, the true class counts as
    in the top k when fewer than k classes score strictly higher.
    """

    name: str = "top_k_categorical_accuracy"
    k: int = 5

    def __post_init__(self):
        validation.positive_int("TopKAccuracy k", self.k)

    def update(self, targets, preds, weights=None):
        """Sums of the weighted hits and of the weights."""
        true = _true_classes(targets, preds)
        true_score = jnp.take_along_axis(preds, true[..., None], axis=-1)
        higher = jnp.sum(preds > true_score, axis=-1)
        return _mean_stats(higher < self.k, weights)

    def result(self, stats):
        """The weighted fraction of hits."""
        return _mean_result(stats)


@dataclasses.dataclass(frozen=True)
class _ConfusionScore:
    """Precision/recall/F1 from summed true-positive, false-positive and false-negative counts.

    Binary preds (batch,) or (batch, 1): positive when preds > `threshold`,
    targets positive above 0.5. Several classes (batch, C): the predicted class
    is the argmax (`threshold` unused), counts are kept per class and the result
    is their macro average (a class with an empty denominator scores 0, as Keras).
    """

    name: str
    threshold: float = 0.5

    def __post_init__(self):
        _check_threshold(type(self).__name__, self.threshold)

    def update(self, targets, preds, weights=None):
        """Weighted per-class counts {"tp", "fp", "fn"}."""
        if _is_binary(preds):
            true, predicted = _binary_pair(targets, preds, self.threshold)
        else:
            if preds.ndim != 2:
                raise ValueError(f"{self.name} needs preds shaped (batch, classes), got {preds.shape}")
            classes = preds.shape[-1]
            true = jax.nn.one_hot(_true_classes(targets, preds), classes)
            predicted = jax.nn.one_hot(jnp.argmax(preds, axis=-1), classes)
        w = _weights(weights, preds.shape[0])[:, None]
        return {
            "tp": jnp.sum(w * true * predicted, axis=0),
            "fp": jnp.sum(w * (1.0 - true) * predicted, axis=0),
            "fn": jnp.sum(w * true * (1.0 - predicted), axis=0),
        }

    def result(self, stats):
        """The score, macro-averaged over classes."""
        return jnp.mean(self._score(stats["tp"], stats["fp"], stats["fn"]))


@dataclasses.dataclass(frozen=True)
class Precision(_ConfusionScore):
    """tp / (tp + fp): the fraction of predicted positives that are right."""

    name: str = "precision"

    def _score(self, tp, fp, fn):
        return _safe_div(tp, tp + fp)


@dataclasses.dataclass(frozen=True)
class Recall(_ConfusionScore):
    """tp / (tp + fn): the fraction of true positives that are found."""

    name: str = "recall"

    def _score(self, tp, fp, fn):
        return _safe_div(tp, tp + fn)


@dataclasses.dataclass(frozen=True)
class F1Score(_ConfusionScore):
    """2 tp / (2 tp + fp + fn): the harmonic mean of precision and recall."""

    name: str = "f1_score"

    def _score(self, tp, fp, fn):
        return _safe_div(2.0 * tp, 2.0 * tp + fp + fn)


@dataclasses.dataclass(frozen=True)
class AUC:
    """Area under the ROC curve, as Keras's AUC (curve="ROC", summation_method="interpolation").

    Counts true and false positives at `num_thresholds` fixed thresholds evenly
    spread over [0, 1] (the ends nudged to -eps and 1 + eps), so the counts are
    summable; the area is the trapezoidal rule over those points, which equals
    the exact (Mann-Whitney) AUC with scores within one threshold interval
    counted as ties. Preds are probabilities (or logits with `from_logits=True`)
    shaped like the 0/1 targets; several columns are pooled into one curve, as Keras.
    """

    name: str = "auc"
    num_thresholds: int = 200
    from_logits: bool = False

    def __post_init__(self):
        validation.integer("AUC num_thresholds", self.num_thresholds, 2, "an int > 1")

    @property
    def thresholds(self) -> np.ndarray:
        """The fixed thresholds, increasing."""
        eps = 1e-7
        inner = np.arange(1, self.num_thresholds - 1) / (self.num_thresholds - 1)
        return np.concatenate([[-eps], inner, [1.0 + eps]]).astype(np.float32)

    def update(self, targets, preds, weights=None):
        """Weighted true/false positives at each threshold and the totals of positives and negatives."""
        probs = jax.nn.sigmoid(preds) if self.from_logits else preds
        true, _ = _binary_pair(targets, probs, 0.5)
        w = jnp.broadcast_to(_weights(weights, preds.shape[0])[:, None], true.shape)
        above = probs.reshape(true.shape)[..., None] > self.thresholds
        pos, neg = (w * true)[..., None], (w * (1.0 - true))[..., None]
        return {
            "tp": jnp.sum(pos * above, axis=(0, 1)),
            "fp": jnp.sum(neg * above, axis=(0, 1)),
            "positives": jnp.sum(pos),
            "negatives": jnp.sum(neg),
        }

    def result(self, stats):
        """Trapezoidal area under (false positive rate, true positive rate)."""
        tpr = _safe_div(stats["tp"], stats["positives"])
        fpr = _safe_div(stats["fp"], stats["negatives"])
        return jnp.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2.0)


for _metric, _aliases in (
    (Accuracy(), ("acc",)),
    (BinaryAccuracy(), ()),
    (TopKAccuracy(), ()),
    (TopKAccuracy(name="sparse_top_k_categorical_accuracy"), ()),
    (Precision(), ()),
    (Recall(), ()),
    (F1Score(), ()),
    (AUC(), ()),
    (MeanOf("mean_absolute_error", losses.mean_absolute_error), ()),
    (MeanOf("mae", losses.mean_absolute_error), ()),
    (MeanOf("mean_squared_error", losses.mean_squared_error), ()),
    (MeanOf("mse", losses.mean_squared_error), ()),
):
    METRICS.register(_metric.name, _metric, aliases=_aliases)


def get(spec):
    """A metric object from a name or an object with `update`/`result`."""
    if hasattr(spec, "update") and hasattr(spec, "result"):
        return spec
    return METRICS.get(spec)


def names() -> list[str]:
    """Every registered metric name (aliases included)."""
    return METRICS.names()
