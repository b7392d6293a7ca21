"""Where a classifier errs: confusion matrix, per-class precision/recall/F1, its most confident mistakes, as plots.

    report = classification_report(trainer, state, x_test, y_test, class_names)
    report["per_class"]["Shirt"]            # {"precision": ..., "recall": ..., "f1": ..., "support": ...}
    plot_confusion_matrix(report, "confusion_matrix.png")
    plot_errors(x_test, report, "errors.png")

The confusion matrix has the true classes as rows and the predicted ones as
columns (scikit-learn's layout). A class never predicted has precision 0, a
class absent from the labels recall 0 (scikit-learn's `zero_division=0`).
The plots are matplotlib Figures built without pyplot (they display in a
notebook, and are safe off the main thread); with a path they are also written as PNG.
"""
from __future__ import annotations

import os

import numpy as np


def class_probabilities(outputs, *, from_logits: bool = False) -> np.ndarray:
    """(n, classes) probabilities from a classifier's outputs: softmax of logits, or [1 - p, p] for one sigmoid unit."""
    outputs = np.asarray(outputs, np.float64)
    if outputs.ndim != 2:
        raise ValueError(f"a classifier's outputs must be (examples, classes), got shape {outputs.shape}")
    if outputs.shape[1] == 1:
        p = 1 / (1 + np.exp(-outputs)) if from_logits else outputs
        return np.concatenate([1 - p, p], axis=1)
    if from_logits:
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    return outputs


def _scores(tp, predicted, actual) -> dict:
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(actual)}


def report_from_probabilities(labels, probs, class_names=None, *, max_errors: int = 25) -> dict:
    """The report of `probs` ((n, classes) probabilities) against `labels` (class ids, or one-hot rows).

    Returns plain JSON data: `accuracy`, `class_names`, `confusion_matrix`
    (rows true, columns predicted), `per_class` {name: precision, recall, f1,
    support}, `macro_avg`, `weighted_avg`, and `errors`: the `max_errors` most
    confident mistakes, most confident first, each {index, true, predicted, confidence}.
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    num_classes = probs.shape[1]
    names = [str(n) for n in (class_names if class_names is not None else range(num_classes))]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names for a model with {num_classes} classes")
    if labels.shape != probs.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {probs.shape[0]} class ids (or one-hot rows), got shape {labels.shape} "
                         f"{labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), found {labels.min()}..{labels.max()}")
    predicted = probs.argmax(axis=1)
    matrix = np.bincount(labels * num_classes + predicted, minlength=num_classes ** 2).reshape(num_classes, -1)
    tp, column, row = np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    per_class = {name: _scores(tp[i], column[i], row[i]) for i, name in enumerate(names)}
    keys = ("precision", "recall", "f1")
    weights = row / max(row.sum(), 1)
    confidence = probs[np.arange(len(predicted)), predicted]
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:max_errors]
    return {
        "accuracy": float(tp.sum() / max(len(labels), 1)),
        "class_names": names,
        "confusion_matrix": matrix.tolist(),
        "per_class": per_class,
        "macro_avg": {k: float(np.mean([s[k] for s in per_class.values()])) for k in keys},
        "weighted_avg": {k: float(sum(w * s[k] for w, s in zip(weights, per_class.values()))) for k in keys},
        "errors": [{"index": int(i), "true": names[labels[i]], "predicted": names[predicted[i]],
                    "confidence": float(confidence[i])} for i in worst],
    }


def classification_report(trainer, state, x, y, class_names=None, *, from_logits: bool = False,
                          batch_size: int = 256, max_errors: int = 25) -> dict:
    """`report_from_probabilities` of `trainer.predict(state, x)` against `y` (say `from_logits` if the model ends without softmax)."""
    outputs = trainer.predict(state, x, batch_size=batch_size)
    if not isinstance(outputs, np.ndarray):
        raise ValueError("classification_report takes a model with one output; give each output's "
                         "probabilities to report_from_probabilities")
    return report_from_probabilities(y, class_probabilities(outputs, from_logits=from_logits), class_names,
                                     max_errors=max_errors)


def _save(fig, path):
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100, format="png")
    return fig


def plot_confusion_matrix(report: dict, path=None):
    """The report's confusion matrix as a heat map with counts (rows true, columns predicted); a matplotlib Figure."""
    from matplotlib.figure import Figure

    matrix, names = np.asarray(report["confusion_matrix"]), report["class_names"]
    size = 2.5 + 0.6 * len(names)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {report['accuracy']:.4f}")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > matrix.max() / 2 else "black")
    fig.tight_layout()
    return _save(fig, path)


def plot_errors(images, report: dict, path=None, *, columns: int = 5):
    """A grid of the report's most confident mistakes from `images` (n, height, width[, channels]) with true and predicted labels."""
    from matplotlib.figure import Figure

    errors = report["errors"]
    images = np.asarray(images)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise ValueError(f"plot_errors takes images (n, height, width[, 1 or 3 channels]), got shape {images.shape}")
    top = 1.0 if images.dtype.kind == "f" else 255  # images scaled to [0, 1], or bytes
    rows = max(1, -(-len(errors) // columns))
    fig = Figure(figsize=(2.2 * columns, 2.5 * rows))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, error in zip(axes, errors):
        image = images[error["index"]]
        ax.imshow(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image, cmap="gray",
                  vmin=0, vmax=top)
        ax.set_title(f"true: {error['true']}\npred: {error['predicted']} ({error['confidence']:.2f})", fontsize=8)
    if not errors:
        axes[0].text(0.5, 0.5, "no misclassified examples", ha="center", va="center")
    fig.tight_layout()
    return _save(fig, path)
