"""Label-dependency diagnostics on a hand-made prediction set with hand-computed answers."""

import json

import numpy as np
import pytest

from jaxgan import diagnose

NAMES = ("a", "b", "c")
# Four images. Truth: a+b, a+b, a, c. Predictions: a+b, a, a+c, b+c.
TRUTH = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1]], bool)
PREDICTED = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1], [0, 1, 1]], bool)


def test_cooccurrence_is_p_of_column_given_row():
    p, counts = diagnose.cooccurrence(TRUTH)
    assert counts.tolist() == [3, 2, 1]
    # P(b | a) = 2/3 (a occurs 3 times, with b twice); P(a | b) = 1; P(c | a) = 0.
    expected = [[1, 2 / 3, 0], [1, 1, 0], [0, 0, 1]]
    np.testing.assert_allclose(p, expected)
    p_pred, pred_counts = diagnose.cooccurrence(PREDICTED)
    assert pred_counts.tolist() == [3, 2, 2]
    np.testing.assert_allclose(p_pred, [[1, 1 / 3, 1 / 3], [1 / 2, 1, 1 / 2], [1 / 2, 1 / 2, 1]])


def test_a_label_that_never_occurs_has_an_undefined_row():
    p, counts = diagnose.cooccurrence(np.array([[1, 0], [1, 0]], bool))
    assert counts.tolist() == [2, 0] and np.isnan(p[1]).all() and p[0, 1] == 0


def test_distance_and_companion_errors_match_hand_computation():
    result = diagnose.diagnose(TRUTH, PREDICTED, NAMES, top=2, min_support=2)
    # Rows with >= 2 true images and >= 1 predicted: a and b; pairs a->b, a->c, b->a, b->c.
    # |1/3 - 2/3| + |1/3 - 0| + |1/2 - 1| + |1/2 - 0| = 1/3 + 1/3 + 1/2 + 1/2 = 5/3, over 4.
    assert result["compared_pairs"] == 4
    assert result["distance"] == pytest.approx(5 / 12)
    # Strongest true pairs: b->a (P = 1), then a->b (2/3).
    pairs = result["strongest_pairs"]
    assert [(p["given"], p["companion"]) for p in pairs] == [("b", "a"), ("a", "b")]
    b_a, a_b = pairs
    # b -> a: images with b but not a: none; with both: 0 and 1, a predicted on both.
    assert b_a["hallucinated"] is None and b_a["hallucinated_over"] == 0
    assert b_a["missed"] == 0.0 and b_a["missed_over"] == 2
    # a -> b: a without b: image 2, where b is not predicted; both: images 0 and 1, b missed
    # on image 1.
    assert a_b["hallucinated"] == 0.0 and a_b["hallucinated_over"] == 1
    assert a_b["missed"] == 0.5 and a_b["missed_over"] == 2
    assert a_b["P_true"] == pytest.approx(2 / 3) and a_b["P_pred"] == pytest.approx(1 / 3)


def test_hallucinated_companion_is_counted_on_the_companion_column():
    truth = np.array([[1, 0], [1, 0], [1, 1]], bool)
    predicted = np.array([[1, 1], [1, 0], [1, 1]], bool)  # b hallucinated on image 0
    errors = diagnose.companion_errors(truth, predicted, 0, 1)
    assert errors["hallucinated"] == pytest.approx(0.5) and errors["missed"] == 0.0


def test_writes_json_and_a_side_by_side_png(tmp_path):
    results = {
        "bce": diagnose.diagnose(TRUTH, PREDICTED, NAMES, top=2, min_support=2),
        "wgan": diagnose.diagnose(TRUTH, TRUTH, NAMES, top=2, min_support=2),
    }
    assert results["wgan"]["distance"] == 0.0
    path = diagnose.plot(results, str(tmp_path / "c.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    json.dumps(results)  # JSON-able as written
    summary = diagnose.format_summary(results)
    assert "bce: co-occurrence distance 0.4167" in summary and "wgan:" in summary
