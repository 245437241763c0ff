"""The evaluation report: per-class numbers, the validation-threshold protocol, distributions."""

import numpy as np
import pytest

from jaxgan import evaluate, metrics

NAMES = ("cat", "dog", "sky", "sea")


def fake_split(seed, n=300, shift=0.0):
    """Scores that track the labels, each class with its own offset (so per-class thresholds
    differ), shifted by `shift` (so validation and test prefer different thresholds)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(NAMES))) < [0.5, 0.3, 0.2, 0.4]).astype(np.float32)
    offsets = np.array([-0.2, 0.0, 0.15, 0.3]) + shift
    scores = np.clip(0.25 + 0.5 * labels + offsets + rng.normal(0, 0.15, labels.shape), 0, 1)
    return scores, labels


def test_per_class_numbers_equal_jaxgan_metrics_on_the_same_predictions():
    val, test = fake_split(0), fake_split(1)
    report = evaluate.evaluation_report(*test, *val, NAMES, threshold=0.5)
    scores, labels = test
    assert list(report["per_class"]) == list(NAMES)
    for i, name in enumerate(NAMES):
        one = metrics.precision_recall_f1(scores[:, [i]] > 0.5, labels[:, [i]])
        row = report["per_class"][name]
        assert row["precision"] == pytest.approx(one["CP"])
        assert row["recall"] == pytest.approx(one["CR"])
        assert row["F1"] == pytest.approx(one["CF1"])
        assert row["AP"] == pytest.approx(metrics.average_precision(scores[:, i], labels[:, i] > 0))
        assert row["support"] == int(labels[:, i].sum())
        assert row["predicted"] == int((scores[:, i] > 0.5).sum())
    assert report["metrics"]["CF1"] == metrics.compute_metrics(scores, labels, 0.5)["CF1"]


def test_thresholds_are_chosen_on_validation_and_applied_to_test():
    val, test = fake_split(0, shift=0.0), fake_split(1, shift=0.2)
    report = evaluate.evaluation_report(*test, *val, NAMES, threshold=0.5)
    chosen = metrics.best_threshold(*val, "CF1")
    on_test = metrics.best_threshold(*test, "CF1")
    assert chosen != on_test  # the data make the two protocols distinguishable
    assert report["thresholds"]["CF1"] == chosen
    test_scores, test_labels = test
    expected = metrics.precision_recall_f1(test_scores > chosen, test_labels)
    assert report["metrics"]["CF1_val_threshold"] == pytest.approx(expected["CF1"])
    assert report["metrics"]["CP_val_threshold"] == pytest.approx(expected["CP"])
    of1 = metrics.best_threshold(*val, "OF1")
    expected_o = metrics.precision_recall_f1(test_scores > of1, test_labels)
    assert report["metrics"]["OF1_val_threshold"] == pytest.approx(expected_o["OF1"])
    assert report["metrics"]["validation_CF1"] == pytest.approx(
        metrics.precision_recall_f1(val[0] > 0.5, val[1])["CF1"]
    )


def test_per_class_thresholds_come_from_each_class_on_validation():
    val, test = fake_split(0), fake_split(1)
    report = evaluate.evaluation_report(*test, *val, NAMES, threshold=0.5)
    per_class = report["thresholds"]["per_class"]
    val_scores, val_labels = val
    for i, name in enumerate(NAMES):
        f1 = [
            metrics.precision_recall_f1(val_scores[:, [i]] > t, val_labels[:, [i]])["CF1"]
            for t in metrics.THRESHOLD_GRID
        ]
        assert per_class[i] == pytest.approx(metrics.THRESHOLD_GRID[int(np.argmax(f1))])
        assert report["per_class"][name]["threshold"] == per_class[i]
    assert len(set(per_class)) > 1  # the classes' offsets make them differ
    tuned = metrics.precision_recall_f1(test[0] > np.array(per_class), test[1])
    assert report["metrics"]["CF1_per_class_threshold"] == pytest.approx(tuned["CF1"])
    vector = evaluate.threshold_vector(report["thresholds"], "per_class", len(NAMES))
    np.testing.assert_array_equal(vector, per_class)
    assert (
        evaluate.threshold_vector(report["thresholds"], "global", 4).tolist()
        == [report["thresholds"]["CF1"]] * 4
    )
    assert evaluate.threshold_vector(report["thresholds"], "configured", 4).tolist() == [0.5] * 4


def test_labels_per_image_distribution():
    labels = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]], np.float32)
    scores = np.array([[0.9, 0.9, 0.1, 0.1]] * 4)
    report = evaluate.evaluation_report(scores, labels, scores, labels, NAMES, threshold=0.5)
    assert report["labels_per_image"]["true"] == {"0": 1, "1": 1, "2": 1, "3": 1}
    assert report["labels_per_image"]["predicted"] == {"0": 0, "1": 0, "2": 4}
    assert report["per_class"]["sea"]["recall"] is None  # no positive: undefined, not 0


def test_table_shows_the_validation_tuned_rows():
    val, test = fake_split(0), fake_split(1)
    report = evaluate.evaluation_report(*test, *val, NAMES, threshold=0.5)
    table = metrics.format_table(report["metrics"], "title")
    rows = {line.split()[0]: line for line in table.splitlines()[2:6]}
    assert set(rows) == {"threshold", "top-3", "val.", "per-class"}
    cf1 = float(rows["val."].split()[4])
    assert cf1 == pytest.approx(100 * report["metrics"]["CF1_val_threshold"], abs=0.006)
