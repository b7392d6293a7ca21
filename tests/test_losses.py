"""Every loss against an independent numpy formula and its gradient against finite
differences; stability for saturated probabilities and huge logits; CTC against
brute-force enumeration of alignments; reductions, sample and class weights; errors."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnn import losses

N, C = 6, 4
_rng = np.random.default_rng(0)
LABELS = _rng.integers(0, C, N)
ONE_HOT = np.eye(C)[LABELS]
BITS = _rng.integers(0, 2, (N, C)).astype(float)
SIGNS = 2 * BITS - 1
REAL_T, REAL_P = _rng.normal(size=(N, C)), 2 * _rng.normal(size=(N, C))
PROBS = _rng.uniform(0.05, 0.95, (N, C))
DIST_T, DIST_P = _rng.dirichlet(np.ones(C), N), PROBS / PROBS.sum(-1, keepdims=True)
DIST_T[0, 1] = 0.0  # a zero target contributes 0 to KL
DIST_T[0] /= DIST_T[0].sum()
LOGITS = 3 * _rng.normal(size=(N, C))


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _smooth(onehot, s):
    return onehot * (1 - s) + s / onehot.shape[-1]


def _bce(t, log_p, log_not_p, s=0.0):
    t = t * (1 - s) + 0.5 * s
    return -np.mean(t * log_p + (1 - t) * log_not_p, -1)


def _huber(t, p, d):
    e = np.abs(p - t)
    return np.mean(np.where(e <= d, 0.5 * e ** 2, d * e - 0.5 * d ** 2), -1)


def _hinge(t, p, power):
    return np.mean(np.maximum(1 - t * p, 0) ** power, -1)


# (name, options, targets, preds, numpy reference)
CASES = [
    ("mean_squared_error", {}, REAL_T, REAL_P, lambda t, p: np.mean((t - p) ** 2, -1)),
    ("mean_absolute_error", {}, REAL_T, REAL_P, lambda t, p: np.mean(np.abs(t - p), -1)),
    ("huber", {}, REAL_T, REAL_P, lambda t, p: _huber(t, p, 1.0)),
    ("huber", {"delta": 2.5}, REAL_T, REAL_P, lambda t, p: _huber(t, p, 2.5)),
    ("binary_crossentropy", {}, BITS, PROBS, lambda t, p: _bce(t, np.log(p), np.log(1 - p))),
    ("binary_crossentropy", {"label_smoothing": 0.2}, BITS, PROBS,
     lambda t, p: _bce(t, np.log(p), np.log(1 - p), 0.2)),
    ("binary_crossentropy", {"from_logits": True}, BITS, LOGITS,
     lambda t, z: _bce(t, -np.logaddexp(0, -z), -np.logaddexp(0, z))),
    ("binary_crossentropy", {"from_logits": True, "label_smoothing": 0.1}, BITS, LOGITS,
     lambda t, z: _bce(t, -np.logaddexp(0, -z), -np.logaddexp(0, z), 0.1)),
    ("categorical_crossentropy", {}, ONE_HOT, DIST_P, lambda t, p: -np.sum(t * np.log(p), -1)),
    ("categorical_crossentropy", {"label_smoothing": 0.1}, ONE_HOT, DIST_P,
     lambda t, p: -np.sum(_smooth(t, 0.1) * np.log(p), -1)),
    ("categorical_crossentropy", {"from_logits": True}, DIST_T, LOGITS, lambda t, z: -np.sum(t * _log_softmax(z), -1)),
    ("categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.3}, ONE_HOT, LOGITS,
     lambda t, z: -np.sum(_smooth(t, 0.3) * _log_softmax(z), -1)),
    ("sparse_categorical_crossentropy", {}, LABELS, DIST_P, lambda y, p: -np.log(p[np.arange(N), y])),
    ("sparse_categorical_crossentropy", {"from_logits": True}, LABELS, LOGITS,
     lambda y, z: -_log_softmax(z)[np.arange(N), y]),
    ("sparse_categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.2}, LABELS, LOGITS,
     lambda y, z: -np.sum(_smooth(np.eye(C)[y], 0.2) * _log_softmax(z), -1)),
    ("kl_divergence", {}, DIST_T, DIST_P,
     lambda t, p: np.sum(np.where(t > 0, t * np.log(np.where(t > 0, t, 1) / p), 0), -1)),
    ("hinge", {}, SIGNS, REAL_P, lambda t, p: _hinge(t, p, 1)),
    ("hinge", {}, BITS, REAL_P, lambda t, p: _hinge(2 * t - 1, p, 1)),
    ("squared_hinge", {}, SIGNS, REAL_P, lambda t, p: _hinge(t, p, 2)),
    ("squared_hinge", {}, BITS, REAL_P, lambda t, p: _hinge(2 * t - 1, p, 2)),
]
IDS = [f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)]


def test_every_registered_loss_is_checked():
    checked = {losses.get(c[0]).__name__ for c in CASES} | {"ctc"}
    assert {losses.get(n).__name__ for n in losses.names()} == checked


@pytest.mark.parametrize("name,options,targets,preds,reference", CASES, ids=IDS)
def test_matches_formula(name, options, targets, preds, reference):
    with jax.enable_x64():
        per_example = losses.get(name, **options)(jnp.asarray(targets), jnp.asarray(preds))
    assert per_example.shape == (N,)
    np.testing.assert_allclose(per_example, reference(targets, preds), rtol=1e-10)


@pytest.mark.parametrize("name,options,targets,preds,reference", CASES, ids=IDS)
def test_gradient_matches_finite_differences(name, options, targets, preds, reference):
    # Reverse mode only: losses are differentiated by jax.grad; forward mode is checked on the activations.
    fn = losses.get(name, **options)
    with jax.enable_x64():
        check_grads(lambda p: fn(jnp.asarray(targets), p), (jnp.asarray(preds),), order=1, modes=("rev",))


SATURATED = [
    ("binary_crossentropy", {}, [[1.0, 0.0, 1.0, 0.0]], [[0.0, 1.0, 1.0, 0.0]]),
    ("categorical_crossentropy", {}, [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
    ("sparse_categorical_crossentropy", {"label_smoothing": 0.1}, [1, 0], [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
    ("kl_divergence", {}, [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
    ("binary_crossentropy", {"from_logits": True, "label_smoothing": 0.1}, [[1.0, 0.0, 1.0, 0.0]],
     [[1e4, -1e4, -1e4, 1e4]]),
    ("categorical_crossentropy", {"from_logits": True}, [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
     [[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]]),
    ("sparse_categorical_crossentropy", {"from_logits": True}, [1, 0], [[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]]),
]


@pytest.mark.parametrize("name,options,targets,preds", SATURATED)
def test_finite_loss_and_gradient_when_saturated(name, options, targets, preds):
    fn = losses.get(name, **options)
    preds = jnp.asarray(preds, jnp.float32)
    value, grad = jax.value_and_grad(lambda p: jnp.sum(fn(jnp.asarray(targets), p)))(preds)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("options,expected", [
    ({}, [-np.log(1e-7), 0.0]),            # confidently wrong: -log(eps); confidently right: ~0
    ({"from_logits": True}, [2e4, 0.0]),   # logit gap of 2e4, exactly
])
def test_saturated_values(options, expected):
    preds = [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]] if not options else [[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]]
    value = losses.sparse_categorical_crossentropy(jnp.array([1, 0]), jnp.asarray(preds, jnp.float32), **options)
    np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-5)


def _ctc_brute_force(labels, logits, blank):
    """-log sum over all frame paths that collapse (merge repeats, drop blanks) to the labels."""
    log_p = _log_softmax(logits)
    frames, classes = logits.shape
    total = 0.0
    for path in itertools.product(range(classes), repeat=frames):
        collapsed = [c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1])]
        if collapsed == list(labels):
            total += np.exp(sum(log_p[t, c] for t, c in enumerate(path)))
    return -np.log(total)


@pytest.mark.parametrize("blank_id,labels", [
    (0, [[1, 2, 0], [1, 1, 0], [2, 0, 0]]),        # Keras's convention: 0 is blank and padding
    (0, [[1, 2, -1], [1, 1, -1], [2, -1, -1]]),
    (2, [[0, 1, -1], [1, 1, -1], [0, -1, -1]]),
])
def test_ctc_matches_brute_force_enumeration(blank_id, labels):
    logits = np.random.default_rng(1).normal(size=(3, 4, 3))
    labels = np.asarray(labels)
    with jax.enable_x64():
        loss = losses.get("ctc", blank_id=blank_id)(jnp.asarray(labels), jnp.asarray(logits))
    reference = [_ctc_brute_force([c for c in row if c >= 0 and c != blank_id], z, blank_id)
                 for row, z in zip(labels, logits)]
    np.testing.assert_allclose(loss, reference, rtol=1e-6)


def test_ctc_gradient_matches_finite_differences():
    labels = jnp.array([[1, 2, 0], [1, 1, 0]])
    with jax.enable_x64():
        logits = jnp.asarray(np.random.default_rng(2).normal(size=(2, 4, 3)))
        check_grads(jax.jit(lambda z: losses.ctc(labels, z)), (logits,), order=1, modes=("rev",))


def test_ctc_shape_error():
    with pytest.raises(ValueError, match=r"ctc needs labels \(batch, max_label_length\) and logits"):
        losses.ctc(jnp.array([1, 2]), jnp.zeros((1, 4, 3)))


SAMPLE_WEIGHT = np.array([1.0, 0.5, 0.0, 2.0, 1.0, 1.5])
CLASS_WEIGHT = {0: 2.0, 2: 0.5, 3: 3.0}  # class 1 is missing: weight 1


@pytest.mark.parametrize("reduction", ["mean", "sum", "sum_over_batch_size", "none"])
@pytest.mark.parametrize("loss,targets,preds", [
    ("sparse_categorical_crossentropy", LABELS, DIST_P),
    ("categorical_crossentropy", ONE_HOT, DIST_P),
])
def test_compute_reductions_with_sample_and_class_weights(reduction, loss, targets, preds):
    per_example = -np.log(DIST_P[np.arange(N), LABELS])
    weights = SAMPLE_WEIGHT * np.array([CLASS_WEIGHT.get(c, 1.0) for c in LABELS])
    expected = {"mean": np.sum(per_example * weights) / np.sum(weights), "sum": np.sum(per_example * weights),
                "sum_over_batch_size": np.sum(per_example * weights) / N, "none": per_example * weights}[reduction]
    value = losses.compute(loss, jnp.asarray(targets), jnp.asarray(preds, jnp.float32), sample_weight=SAMPLE_WEIGHT,
                           class_weight=CLASS_WEIGHT, reduction=reduction)
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_class_weights_for_binary_targets_and_plain_mean():
    targets = jnp.asarray(BITS[:, :1])
    np.testing.assert_allclose(losses.class_weights(targets, {0: 0.25, 1: 4.0}),
                               np.where(BITS[:, 0] == 1, 4.0, 0.25))
    per_example = losses.binary_crossentropy(targets, jnp.asarray(PROBS[:, :1], jnp.float32))
    np.testing.assert_allclose(losses.compute("bce", targets, jnp.asarray(PROBS[:, :1], jnp.float32)),
                               np.mean(per_example), rtol=1e-6)


def test_compute_broadcasts_sample_weights_over_sequence_losses():
    labels, logits = LABELS.reshape(2, 3), LOGITS.reshape(2, 3, C)
    per_token = -_log_softmax(logits)[np.arange(2)[:, None], np.arange(3)[None, :], labels]
    loss, labels, logits = losses.get("scce", from_logits=True), jnp.asarray(labels), jnp.asarray(logits, jnp.float32)
    value = losses.compute(loss, labels, logits, sample_weight=[0.0, 2.0], reduction="none")
    np.testing.assert_allclose(value, per_token * np.array([[0.0], [2.0]]), rtol=1e-5)
    np.testing.assert_allclose(losses.compute(loss, labels, logits, sample_weight=[0.0, 2.0]), per_token[1].mean(),
                               rtol=1e-5)


def test_reduce_is_a_weighted_mean_that_ignores_zero_weights():
    per_example = jnp.array([1.0, 2.0, 3.0, 100.0])
    np.testing.assert_allclose(losses.reduce(per_example, jnp.array([1.0, 1.0, 2.0, 0.0])), 9.0 / 4.0)
    np.testing.assert_allclose(losses.reduce(per_example), 26.5)


def test_to_categorical():
    np.testing.assert_array_equal(losses.to_categorical(jnp.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    assert losses.to_categorical(jnp.array([1, 3])).shape == (2, 4)


@pytest.mark.parametrize("call,match", [
    (lambda: losses.get("hubert"), r"unknown loss 'hubert'; known: .*huber.*mse"),
    (lambda: losses.get("mse", from_logits=True),
     "unknown option 'from_logits' for loss 'mean_squared_error'; allowed: none"),
    (lambda: losses.get("bce", smoothing=0.1),
     "unknown option 'smoothing' for loss 'binary_crossentropy'; allowed: from_logits, label_smoothing"),
    (lambda: losses.get("cce", label_smoothing=1.5), r"label_smoothing must be in \[0, 1\], got 1.5"),
    (lambda: losses.get("huber", delta=0.0), "huber delta must be > 0, got 0.0"),
    (lambda: losses.get("ctc", blank_id=-1), "ctc blank_id must be a non-negative integer, got -1"),
    (lambda: losses.binary_crossentropy(BITS, jnp.asarray(PROBS), label_smoothing=-0.1),
     r"label_smoothing must be in \[0, 1\], got -0.1"),
    (lambda: losses.categorical_crossentropy(jnp.asarray(LABELS), jnp.asarray(PROBS)),
     "categorical_crossentropy needs one-hot targets shaped like preds"),
    (lambda: losses.sparse_categorical_crossentropy(jnp.asarray(ONE_HOT), jnp.asarray(PROBS)),
     r"sparse_categorical_crossentropy needs integer labels shaped \(6,\), got \(6, 4\)"),
    (lambda: losses.mean_squared_error(jnp.asarray(REAL_T[:, :3]), jnp.asarray(REAL_P)),
     r"targets shaped \(6, 3\) do not match preds shaped \(6, 4\)"),
    (lambda: losses.compute("mse", REAL_T, jnp.asarray(REAL_P), reduction="avg"),
     "reduction must be one of mean, sum, sum_over_batch_size, none, got 'avg'"),
    (lambda: losses.compute("scce", LABELS, jnp.asarray(PROBS), class_weight={-1: 2.0}),
     "class_weight must be a non-empty dict from class ids"),
])
def test_bad_names_options_and_shapes_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
