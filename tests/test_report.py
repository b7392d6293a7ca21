"""The evaluation report against a confusion matrix counted by hand, and its plots as valid PNGs."""
import matplotlib.image
import numpy as np
import pytest

from jaxnn import Dense, Flatten, Sequential, Trainer
from jaxnn.report import (class_probabilities, classification_report, plot_confusion_matrix, plot_errors,
                          report_from_probabilities)

# Ten examples of three classes; the predictions (argmax of PROBS) are written beside each label.
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PROBS = np.array([
    [0.8, 0.1, 0.1],    # 0 -> 0
    [0.6, 0.3, 0.1],    # 0 -> 0
    [0.2, 0.7, 0.1],    # 0 -> 1  (0.7)
    [0.1, 0.1, 0.8],    # 0 -> 2  (0.8)
    [0.1, 0.9, 0.0],    # 1 -> 1
    [0.3, 0.6, 0.1],    # 1 -> 1
    [0.95, 0.05, 0.0],  # 1 -> 0  (0.95)
    [0.0, 0.2, 0.8],    # 2 -> 2
    [0.1, 0.3, 0.6],    # 2 -> 2
    [0.2, 0.5, 0.3],    # 2 -> 1  (0.5)
])
NAMES = ("cat", "dog", "bird")


def test_numbers_match_a_hand_count():
    report = report_from_probabilities(LABELS, PROBS, NAMES)
    # rows: true cat, dog, bird; columns: predicted cat, dog, bird
    assert report["confusion_matrix"] == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    assert report["accuracy"] == pytest.approx(6 / 10)
    cat, dog, bird = (report["per_class"][n] for n in NAMES)
    assert (cat["precision"], cat["recall"], cat["support"]) == (pytest.approx(2 / 3), pytest.approx(2 / 4), 4)
    assert cat["f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))
    assert (dog["precision"], dog["recall"]) == (pytest.approx(2 / 4), pytest.approx(2 / 3))
    assert (bird["precision"], bird["recall"], bird["f1"]) == (pytest.approx(2 / 3),) * 3
    assert report["macro_avg"]["recall"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert report["weighted_avg"]["recall"] == pytest.approx(0.6)  # weighted recall is accuracy
    assert report["errors"] == [
        {"index": 6, "true": "dog", "predicted": "cat", "confidence": 0.95},
        {"index": 3, "true": "cat", "predicted": "bird", "confidence": 0.8},
        {"index": 2, "true": "cat", "predicted": "dog", "confidence": 0.7},
        {"index": 9, "true": "bird", "predicted": "dog", "confidence": 0.5},
    ]
    assert len(report_from_probabilities(LABELS, PROBS, max_errors=2)["errors"]) == 2


def test_one_hot_labels_a_never_predicted_class_and_default_names():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    report = report_from_probabilities(np.eye(3)[[0, 2]], probs)
    assert report["class_names"] == ["0", "1", "2"]
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert report["per_class"]["1"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["per_class"]["2"]["recall"] == 0.0


def test_probabilities_from_logits_and_from_one_sigmoid_unit():
    logits = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(class_probabilities(logits, from_logits=True), np.exp(logits) / np.exp(logits).sum())
    np.testing.assert_allclose(class_probabilities(np.array([[0.25]])), [[0.75, 0.25]])
    np.testing.assert_allclose(class_probabilities(np.array([[0.0]]), from_logits=True), [[0.5, 0.5]])


@pytest.mark.parametrize("labels,probs,names,match", [
    (LABELS, PROBS, ("a", "b"), "class_names has 2 names for a model with 3 classes"),
    (LABELS[:5], PROBS, NAMES, "labels must be 10 class ids"),
    (LABELS + 1, PROBS, NAMES, r"labels must be in \[0, 3\), found 1..3"),
])
def test_bad_labels_or_names_are_one_line(labels, probs, names, match):
    with pytest.raises(ValueError, match=match):
        report_from_probabilities(labels, probs, names)


def test_the_report_of_a_trainer_and_its_plots(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((12, 4, 4, 1), dtype=np.float32)
    y = rng.integers(0, 3, 12)
    trainer = Trainer(Sequential([Flatten(), Dense(3, "softmax")]), loss="sparse_categorical_crossentropy",
                      optimizer="sgd")
    state = trainer.init(0, (4, 4, 1))
    report = classification_report(trainer, state, x, y, NAMES, batch_size=5)
    expected = report_from_probabilities(y, trainer.predict(state, x), NAMES)
    assert report == expected and sum(map(sum, report["confusion_matrix"])) == 12

    plot_confusion_matrix(report, tmp_path / "cm.png")
    plot_errors(x, report, tmp_path / "errors.png")
    for name in ("cm.png", "errors.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(tmp_path / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 100 and image.std() > 0  # decodes, and is not blank
    with pytest.raises(ValueError, match=r"plot_errors takes images \(n, height, width"):
        plot_errors(x.reshape(12, 16), report)
