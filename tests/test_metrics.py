"""Metrics against numpy references, exact over a whole set whatever the batching
(batches of 7, a ragged last batch padded with zero weights), AUC against a
rank-based (Mann-Whitney) AUC, and the errors."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import Dense, Sequential, Trainer, metrics
from jaxnn.metrics import AUC, BinaryAccuracy, F1Score, Precision, Recall, TopKAccuracy

N, C = 45, 4
_rng = np.random.default_rng(0)
WEIGHTS = _rng.uniform(0.5, 2.0, N).astype(np.float32)
LABELS = _rng.integers(0, C, N)
ONE_HOT = np.eye(C, dtype=np.float32)[LABELS]
SCORES = (_rng.normal(size=(N, C)) + 1.5 * ONE_HOT).astype(np.float32)
BITS = _rng.integers(0, 2, (N, 1)).astype(np.float32)
PROBS = np.clip(0.35 * BITS + _rng.uniform(0, 0.65, (N, 1)), 0, 1).astype(np.float32)
MULTI_BITS = _rng.integers(0, 2, (N, 3)).astype(np.float32)
MULTI_PROBS = _rng.uniform(size=(N, 3)).astype(np.float32)
REAL_T, REAL_P = _rng.normal(size=(N, 3)).astype(np.float32), _rng.normal(size=(N, 3)).astype(np.float32)


def _wmean(values, w):
    return np.sum(w * values) / np.sum(w)


def _top_k(labels, scores, k, w):
    higher = np.array([np.sum(s > s[y]) for s, y in zip(scores, labels)])
    return _wmean(higher < k, w)


def _confusion(true, pred, w, classes):
    """Per-class weighted (tp, fp, fn) with a loop over classes."""
    rows = [(np.sum(w * ((pred == c) & (true == c))), np.sum(w * ((pred == c) & (true != c))),
             np.sum(w * ((pred != c) & (true == c)))) for c in classes]
    return np.array(rows, float).T


def _score(kind, tp, fp, fn):
    num, den = {"precision": (tp, tp + fp), "recall": (tp, tp + fn), "f1": (2 * tp, 2 * tp + fp + fn)}[kind]
    return np.mean(np.where(den > 0, num / np.where(den > 0, den, 1), 0.0))


def _binary_score(kind, threshold):
    def reference(t, p, w):
        return _score(kind, *_confusion(t[:, 0] > 0.5, p[:, 0] > threshold, w, [True]))
    return reference


def _macro_score(kind):
    def reference(y, s, w):
        return _score(kind, *_confusion(y, s.argmax(-1), w, range(C)))
    return reference


def _bins(p, num_thresholds):
    """Index of the threshold interval each score falls in (thresholds as Keras: -eps, i/(T-1), 1+eps)."""
    thresholds = np.r_[-1e-7, np.arange(1, num_thresholds - 1) / (num_thresholds - 1), 1 + 1e-7].astype(np.float32)
    return np.searchsorted(thresholds, p.astype(np.float32), side="left")


def _mann_whitney(t, scores, w):
    """Weighted probability that a positive outscores a negative, ties counting 1/2."""
    pos, neg = t > 0.5, t <= 0.5
    greater = (scores[pos][:, None] > scores[neg][None, :]) + 0.5 * (scores[pos][:, None] == scores[neg][None, :])
    pair_w = w[pos][:, None] * w[neg][None, :]
    return np.sum(pair_w * greater) / np.sum(pair_w)


def _auc_reference(num_thresholds):
    def reference(t, p, w):
        w = np.broadcast_to(w[:, None], t.shape).ravel()
        return _mann_whitney(t.ravel(), _bins(p.ravel(), num_thresholds), w)
    return reference


# (metric, targets, preds, reference(targets, preds, weights))
CASES = [
    (metrics.get("accuracy"), LABELS, SCORES, lambda y, s, w: _wmean(s.argmax(-1) == y, w)),
    (metrics.get("accuracy"), ONE_HOT, SCORES, lambda t, s, w: _wmean(s.argmax(-1) == t.argmax(-1), w)),
    (metrics.get("accuracy"), BITS, PROBS, lambda t, p, w: _wmean((p[:, 0] > 0.5) == (t[:, 0] > 0.5), w)),
    (metrics.get("binary_accuracy"), BITS[:, 0], PROBS[:, 0], lambda t, p, w: _wmean((p > 0.5) == (t > 0.5), w)),
    (BinaryAccuracy(threshold=0.3), MULTI_BITS, MULTI_PROBS,
     lambda t, p, w: _wmean(np.mean((p > 0.3) == (t > 0.5), -1), w)),
    (metrics.get("sparse_top_k_categorical_accuracy"), LABELS, SCORES, lambda y, s, w: _top_k(y, s, 5, w)),
    (TopKAccuracy(k=2), LABELS, SCORES, lambda y, s, w: _top_k(y, s, 2, w)),
    (TopKAccuracy(name="top2", k=2), ONE_HOT, SCORES, lambda t, s, w: _top_k(t.argmax(-1), s, 2, w)),
    (metrics.get("precision"), BITS, PROBS, _binary_score("precision", 0.5)),
    (Recall(threshold=0.4), BITS, PROBS, _binary_score("recall", 0.4)),
    (F1Score(threshold=0.6), BITS, PROBS, _binary_score("f1", 0.6)),
    (metrics.get("precision"), LABELS, SCORES, _macro_score("precision")),
    (metrics.get("recall"), ONE_HOT, SCORES, lambda t, s, w: _macro_score("recall")(t.argmax(-1), s, w)),
    (metrics.get("f1_score"), LABELS, SCORES, _macro_score("f1")),
    (metrics.get("mae"), REAL_T, REAL_P, lambda t, p, w: _wmean(np.mean(np.abs(t - p), -1), w)),
    (metrics.get("mse"), REAL_T, REAL_P, lambda t, p, w: _wmean(np.mean((t - p) ** 2, -1), w)),
    (metrics.get("auc"), BITS, PROBS, _auc_reference(200)),
    (AUC(num_thresholds=7), BITS, PROBS, _auc_reference(7)),
    (AUC(), ONE_HOT, jax.nn.softmax(SCORES), _auc_reference(200)),
]
IDS = [f"{c[0].name}-{i}" for i, c in enumerate(CASES)]


def _in_batches(metric, targets, preds, weights, batch_size):
    """Stats summed over jitted batches; the ragged last batch is padded with junk of weight 0."""
    pad = -len(targets) % batch_size
    junk = np.random.default_rng(1).permutation(len(targets))[:pad]
    targets, preds = np.concatenate([targets, targets[junk]]), np.concatenate([preds, preds[::-1][junk]])
    weights = np.concatenate([weights, np.zeros(pad, np.float32)])
    update = jax.jit(metric.update)
    total = None
    for i in range(0, len(targets), batch_size):
        stats = update(targets[i:i + batch_size], preds[i:i + batch_size], weights[i:i + batch_size])
        total = stats if total is None else jax.tree_util.tree_map(jnp.add, total, stats)
    return metric.result(total)


@pytest.mark.parametrize("metric,targets,preds,reference", CASES, ids=IDS)
def test_exact_over_the_whole_set_whatever_the_batching(metric, targets, preds, reference):
    targets, preds = np.asarray(targets), np.asarray(preds)
    expected = reference(targets, preds, WEIGHTS)
    one_pass = metric.result(metric.update(jnp.asarray(targets), jnp.asarray(preds), jnp.asarray(WEIGHTS)))
    np.testing.assert_allclose(one_pass, expected, rtol=1e-5)
    np.testing.assert_allclose(_in_batches(metric, targets, preds, WEIGHTS, 7), expected, rtol=1e-5)


def test_unweighted_update_is_a_plain_mean():
    metric = metrics.get("accuracy")
    value = metric.result(metric.update(jnp.asarray(LABELS), jnp.asarray(SCORES)))
    np.testing.assert_allclose(value, np.mean(SCORES.argmax(-1) == LABELS), rtol=1e-6)


@pytest.mark.parametrize("num_thresholds", [50, 200, 1000])
def test_auc_is_close_to_the_exact_rank_auc_within_the_threshold_ties(num_thresholds):
    """The thresholded AUC counts pairs in one threshold interval as ties, so it is
    within half the (weighted) fraction of such pairs of the exact AUC."""
    t, p = BITS[:, 0], PROBS[:, 0]
    metric = AUC(num_thresholds=num_thresholds)
    auc = float(metric.result(metric.update(jnp.asarray(t), jnp.asarray(p), jnp.asarray(WEIGHTS))))
    bins = _bins(p, num_thresholds)
    pos, neg = t > 0.5, t <= 0.5
    pair_w = WEIGHTS[pos][:, None] * WEIGHTS[neg][None, :]
    tied = np.sum(pair_w * (bins[pos][:, None] == bins[neg][None, :])) / np.sum(pair_w)
    assert abs(auc - _mann_whitney(t, p, WEIGHTS)) <= 0.5 * tied + 1e-6
    assert tied < 5.0 / num_thresholds


def test_trainer_evaluate_with_a_ragged_last_batch_matches_one_pass():
    names = ("auc", "precision", "recall", "f1_score", "binary_accuracy")
    trainer = Trainer(Sequential([Dense(1, "sigmoid")]), loss="binary_crossentropy", optimizer="sgd", metrics=names)
    x = np.concatenate([PROBS, REAL_T[:, :1]], axis=1)
    state = trainer.init(jax.random.key(0), (2,))
    results = trainer.evaluate(state, x, BITS, batch_size=7)
    preds = jnp.asarray(trainer.predict(state, x, batch_size=45))
    for name in names:
        metric = metrics.get(name)
        np.testing.assert_allclose(results[name], metric.result(metric.update(jnp.asarray(BITS), preds)), rtol=1e-5)


@pytest.mark.parametrize("preds,expected", [([0.1, 0.2, 0.8, 0.9], 1.0), ([0.9, 0.8, 0.2, 0.1], 0.0),
                                            ([0.5, 0.5, 0.5, 0.5], 0.5)])
def test_auc_extremes(preds, expected):
    metric = metrics.get("auc")
    np.testing.assert_allclose(metric.result(metric.update(jnp.array([0, 0, 1, 1]), jnp.asarray(preds))), expected,
                               atol=1e-6)


def test_auc_from_logits_equals_auc_on_probabilities():
    logits = np.log(PROBS / (1 - PROBS + 1e-6) + 1e-6)
    on_logits = AUC(from_logits=True).update(jnp.asarray(BITS), jnp.asarray(logits))
    on_probs = AUC().update(jnp.asarray(BITS), jax.nn.sigmoid(jnp.asarray(logits)))
    np.testing.assert_allclose(AUC().result(on_logits), AUC().result(on_probs))


@pytest.mark.parametrize("name", metrics.names())
def test_registered_metrics_are_hashable_frozen_and_named(name):
    metric = metrics.get(name)
    hash(metric)
    with pytest.raises(dataclasses.FrozenInstanceError):
        metric.name = "other"
    assert metric.name == name or name == "acc"


def test_precision_class_without_predictions_scores_zero():
    metric = metrics.get("precision")
    stats = metric.update(jnp.array([0, 1, 1]), jnp.array([[2.0, 0, 0], [2.0, 0, 0], [0, 2.0, 0]]))
    np.testing.assert_allclose(metric.result(stats), (0.5 + 1.0 + 0.0) / 3)


@pytest.mark.parametrize("call,match", [
    (lambda: metrics.get("accuracy_score"), r"unknown metric 'accuracy_score'; known: .*auc.*f1_score"),
    (lambda: TopKAccuracy(k=0), "TopKAccuracy k must be a positive integer, got 0"),
    (lambda: AUC(num_thresholds=1), "AUC num_thresholds must be an int > 1, got 1"),
    (lambda: Precision(threshold=1.5), r"Precision threshold must be in \[0, 1\], got 1.5"),
    (lambda: BinaryAccuracy(threshold=-0.1), r"BinaryAccuracy threshold must be in \[0, 1\], got -0.1"),
    (lambda: metrics.get("accuracy").update(jnp.zeros(3), jnp.zeros((4, 5))),
     r"targets shaped \(3,\) are neither integer labels for preds \(4, 5\) nor one-hot like them"),
    (lambda: metrics.get("mae").update(jnp.zeros(3), jnp.zeros(3)), r"preds need a feature axis: \(batch, 1\)"),
    (lambda: metrics.get("auc").update(jnp.zeros(3), jnp.zeros((3, 2))),
     r"binary targets shaped \(3,\) do not match preds shaped \(3, 2\)"),
])
def test_bad_names_options_and_shapes_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
