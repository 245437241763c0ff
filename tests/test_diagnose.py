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


def test_per_label_rates_and_f1_match_hand_computation():
    result = diagnose.diagnose(TRUTH, PREDICTED, NAMES, top=2, min_support=2)
    a, b, c = (result["per_label"][n] for n in NAMES)
    # a: true on 3 of 4, predicted on 3, both on 3 -> F1 1; b: true 2, predicted 2, both 1.
    assert a == {"true_rate": 0.75, "predicted_rate": 0.75, "F1": 1.0}
    assert b["F1"] == pytest.approx(0.5) and c["F1"] == pytest.approx(2 / 3)
    assert result["labels_per_image"] == {"true": 1.5, "predicted": 1.75}


def test_most_changed_pairs_are_the_co_occurring_pairs_ranked_by_change():
    # a+b co-occur in the truth, a+c and b+c do not (c+b... appear only in predictions).
    second = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1]], bool)
    pairs = diagnose.most_changed_pairs(PREDICTED, second, TRUTH, NAMES, top=5)
    # Only a+b co-occurs in the truth: predicted together on 1 of 4 images, then 2 of 4.
    assert pairs == [{"pair": ["a", "b"], "true": 0.5, "change": 0.25}]


def test_runs_evaluated_on_other_images_or_labels_are_refused(monkeypatch, tmp_path):
    """`--compare` with a run of another dataset (or labels file, or class list) is refused
    in one line instead of plotting one run against the other's ground truth."""
    splits = {
        "same": (NAMES, TRUTH, PREDICTED),
        "other_labels": (NAMES, TRUTH[::-1], PREDICTED),
        "other_classes": (("a", "b", "d"), TRUTH, PREDICTED),
        "fewer_images": (NAMES, TRUTH[:2], PREDICTED[:2]),
    }
    monkeypatch.setattr(diagnose, "split_predictions", lambda workdir, *_: splits[workdir])
    monkeypatch.setattr(diagnose, "plot", lambda results, path: path)
    results = diagnose.run(["same", "same"], str(tmp_path / "ok"), top=2)
    assert len(results) == 2
    for other in ("other_labels", "other_classes", "fewer_images"):
        with pytest.raises(ValueError, match="not evaluated on the same test split") as error:
            diagnose.run(["same", other], str(tmp_path / other), top=2)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("blocked", ["a file on the path", "an output that is a folder"])
def test_an_unwritable_out_is_refused_before_any_checkpoint_is_read(tmp_path, blocked):
    workdir = tmp_path / "run"
    if blocked == "a file on the path":
        (tmp_path / "a_file").write_text("")
        out, expected = tmp_path / "a_file" / "diagnostics", "a file blocks the path"
    else:
        out, expected = tmp_path / "out", "is a folder, where a file is to be written"
        (out / "cooccurrence.png").mkdir(parents=True)
    with pytest.raises(ValueError) as error:
        diagnose.run([str(workdir)], str(out))  # no checkpoint there: never reached
    assert "--out" in str(error.value) and expected in str(error.value)
