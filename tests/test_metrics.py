import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

from jaxgan import metrics

# 4 images, 3 classes. Predictions at 0.5: class 0 -> images 0, 2; class 1 -> image 1;
# class 2 -> never.
SCORES = np.array(
    [
        [0.9, 0.2, 0.4],
        [0.1, 0.8, 0.3],
        [0.7, 0.4, 0.2],
        [0.3, 0.1, 0.45],
    ]
)
LABELS = np.array([[1, 0, 1], [0, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_hand_computed_values():
    r = metrics.compute_metrics(SCORES, LABELS, 0.5)
    # per class: Nc = (1, 1, 0), Np = (2, 1, 0), Ng = (2, 2, 2)
    cp, cr = (0.5 + 1.0 + 0.0) / 3, (0.5 + 0.5 + 0.0) / 3
    assert r["CP"] == pytest.approx(cp)
    assert r["CR"] == pytest.approx(cr)
    assert r["CF1"] == pytest.approx(2 * cp * cr / (cp + cr))
    assert r["OP"] == pytest.approx(2 / 3)
    assert r["OR"] == pytest.approx(2 / 6)
    assert r["OF1"] == pytest.approx(2 * (2 / 3) * (1 / 3) / (2 / 3 + 1 / 3))
    assert r["labels_per_image"] == pytest.approx(3 / 4)
    # AP: class 0 ranks (0.9+, 0.7-, 0.3+) -> (1 + 2/3) / 2; class 1 (0.8+, 0.4+) -> 1;
    # class 2 (0.45+, 0.4+) -> 1.
    assert r["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1 + 1) / 3)


def test_cf1_is_harmonic_mean_of_class_means_not_mean_f1():
    r = metrics.compute_metrics(SCORES, LABELS, 0.5)
    mean_f1 = f1_score(LABELS, SCORES > 0.5, average="macro", zero_division=0)
    assert r["CF1"] != pytest.approx(mean_f1)


def test_against_scikit_learn_on_random_data():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 7)) < 0.3).astype(int)
    scores = np.clip(labels * 0.35 + rng.random((300, 7)) * 0.65, 0, 1)
    predicted = scores > 0.5
    r = metrics.compute_metrics(scores, labels, 0.5)
    cp = precision_score(labels, predicted, average="macro", zero_division=0)
    cr = recall_score(labels, predicted, average="macro", zero_division=0)
    assert r["CP"] == pytest.approx(cp)
    assert r["CR"] == pytest.approx(cr)
    assert r["CF1"] == pytest.approx(2 * cp * cr / (cp + cr))
    assert r["OP"] == pytest.approx(precision_score(labels, predicted, average="micro"))
    assert r["OR"] == pytest.approx(recall_score(labels, predicted, average="micro"))
    assert r["OF1"] == pytest.approx(f1_score(labels, predicted, average="micro"))
    assert r["mAP"] == pytest.approx(average_precision_score(labels, scores, average="macro"))


def test_top3_keeps_three_best_that_pass_the_threshold():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.1]])
    labels = np.array([[0, 0, 0, 1, 1]])
    assert metrics.compute_metrics(scores, labels, 0.5)["OR"] == pytest.approx(0.5)
    top3 = metrics.compute_metrics(scores, labels, 0.5)
    assert top3["OR_top3"] == 0.0  # the fourth-best (the only hit) is cut
    assert top3["OP_top3"] == 0.0
    mask = metrics.top_k_mask(scores, 3)
    assert mask.tolist() == [[True, True, True, False, False]]


def test_classes_without_positives_are_left_out():
    labels = np.array([[1, 0], [1, 0]])
    scores = np.array([[0.9, 0.9], [0.8, 0.1]])
    r = metrics.compute_metrics(scores, labels, 0.5)
    assert r["CP"] == pytest.approx(1.0) and r["CR"] == pytest.approx(1.0)
    assert r["mAP"] == pytest.approx(1.0)
    assert r["OP"] == pytest.approx(2 / 3)  # the false positive still counts overall


def test_no_metric_depends_on_the_order_of_the_rows_even_with_saturated_scores():
    rng = np.random.default_rng(1)
    labels = (rng.random((200, 6)) < 0.4).astype(int)
    logits = rng.normal(0, 12, size=(200, 6)) + 8 * labels
    # float32 sigmoids, as evaluate.probabilities returns them: every logit above ~16.6 gives
    # exactly 1.0.
    scores = (1 / (1 + np.exp(-logits.astype(np.float32)))).astype(np.float32)
    assert (scores == 1.0).sum() > 50 and (labels[scores[:, 0] == 1.0, 0] == 0).any()
    results = metrics.compute_metrics(scores, labels, 0.5)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(200)
        assert metrics.compute_metrics(scores[order], labels[order], 0.5) == results
    assert results["mAP"] == pytest.approx(
        average_precision_score(labels, scores, average="macro"), rel=1e-12
    )


def test_tied_positives_share_the_precision_at_the_end_of_their_block():
    # ranks: 0.9 (+), then a tie of three at 0.5 holding one positive, then 0.1 (+).
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    positives = np.array([True, False, True, False, True])
    # precisions: 1/1 at the first, 2/4 for the tied one, 3/5 at the last.
    assert metrics.average_precision(scores, positives) == pytest.approx((1 + 2 / 4 + 3 / 5) / 3)


def test_a_split_without_positives_gives_zeros_not_nan():
    scores = np.array([[0.9, 0.2], [0.3, 0.7]])
    r = metrics.compute_metrics(scores, np.zeros((2, 2), int), 0.5)
    assert all(np.isfinite(v) for v in r.values())
    for name in ("CP", "CR", "CF1", "OP", "OR", "OF1", "mAP", "CR_top3", "OR_top3"):
        assert r[name] == 0.0, name
    assert 0.05 <= metrics.best_threshold(scores, np.zeros((2, 2), int)) <= 0.95


def test_best_threshold_finds_the_separating_value():
    scores = np.array([[0.3], [0.35], [0.2], [0.1]])
    labels = np.array([[1], [1], [0], [0]])
    t = metrics.best_threshold(scores, labels)
    assert 0.2 <= t < 0.3
    assert metrics.compute_metrics(scores, labels, t)["CF1"] == pytest.approx(1.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="must both be"):
        metrics.compute_metrics(np.zeros((3, 2)), np.zeros((3, 4)))


def test_table_prints_the_results_as_percentages():
    results = metrics.compute_metrics(SCORES, LABELS)
    lines = metrics.format_table(results, "title").splitlines()
    assert lines[0] == "title"
    assert lines[1].split() == ["C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1"]
    for line, suffix in ((lines[2], ""), (lines[3], "_top3")):
        names = ["CP", "CR", "CF1", "OP", "OR", "OF1"]
        shown = [float(v) for v in line.split()[-6:]]
        assert shown == [round(100 * results[n + suffix], 2) for n in names]
    assert lines[4].split() == [
        "mAP",
        f"{100 * results['mAP']:.2f}",
        "labels/image",
        f"{results['labels_per_image']:.2f}",
        "images",
        "4",
    ]
