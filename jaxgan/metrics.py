"""Multi-label metrics on the host (docs/method.md), over a whole evaluation split.

Conventions (the paper's and ML-GCN's): CF1 = 2·CP·CR/(CP+CR), the harmonic mean of the
per-class means, not the mean of per-class F1; OP/OR/OF1 pool all (image, label) decisions
(OF1 = micro F1); a never-predicted class has precision 0. Classes with no positive example
in the split are left out of every per-class mean (their recall and AP are undefined); their
false positives still count in OP. A split with no positive at all gives 0 for every recall,
per-class mean and mAP (nothing to find counts as nothing found), never NaN.
Top-3 variants keep, per image, the 3 highest scores that also pass the threshold.
AP ranks by score with tied scores as one block (scikit-learn's convention), so that no
metric depends on the order of the evaluation rows, even where float32 sigmoids saturate at 1.
"""

import numpy as np


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.maximum(den, 1), 0.0)


def _mean(values: np.ndarray) -> float:
    """The mean, 0 for no values (a split without positives)."""
    return float(np.mean(values)) if len(values) else 0.0


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """True at each row's k highest scores (ties broken by label order)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    mask = np.zeros(scores.shape, bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def precision_recall_f1(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """C-P/R/F1 and O-P/R/F1 of boolean predictions against {0, 1} labels, both [N, L]."""
    truth = labels > 0.5
    present = truth.any(axis=0)
    correct = (predicted & truth).sum(axis=0).astype(float)
    n_predicted = predicted.sum(axis=0).astype(float)
    n_truth = truth.sum(axis=0).astype(float)
    cp = _mean(_safe_ratio(correct, n_predicted)[present])
    cr = _mean(correct[present] / n_truth[present])
    op = float(correct.sum() / max(n_predicted.sum(), 1))
    o_r = float(correct.sum() / max(n_truth.sum(), 1))
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": o_r, "OF1": _f1(op, o_r)}


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated AP of one class: mean precision at the rank of each positive.

    Images with tied scores are one block: each positive in it gets the precision at the
    block's end. Without ties this is the plain definition; with ties it does not depend on
    the order of the rows (scikit-learn's `average_precision_score` does the same).
    """
    positives = np.asarray(positives, bool)
    if not positives.any():
        return 0.0
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positives[order]
    block_ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    true_positives = np.cumsum(hits)[block_ends]
    precision = true_positives / (block_ends + 1)
    new_positives = np.diff(true_positives, prepend=0)
    return float(np.sum(precision * new_positives) / positives.sum())


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    truth = labels > 0.5
    present = np.flatnonzero(truth.any(axis=0))
    return _mean([average_precision(scores[:, i], truth[:, i]) for i in present])


def compute_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict:
    """The metrics of docs/method.md for probabilities `scores` and {0, 1} `labels`, both [N, L]."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be [N, L]")
    predicted = scores > threshold
    results = precision_recall_f1(predicted, labels)
    top3 = precision_recall_f1(predicted & top_k_mask(scores, 3), labels)
    results.update({f"{name}_top3": value for name, value in top3.items()})
    results["mAP"] = mean_average_precision(scores, labels)
    results["labels_per_image"] = float(predicted.sum(axis=1).mean())
    results["num_images"] = int(scores.shape[0])
    return results


THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)  # candidates tuned on validation


def best_threshold(scores: np.ndarray, labels: np.ndarray, metric: str = "CF1") -> float:
    """The threshold in 0.05..0.95 maximising `metric` (CF1, OF1, ...); choose it on validation."""
    values = [precision_recall_f1(scores > t, labels)[metric] for t in THRESHOLD_GRID]
    return float(THRESHOLD_GRID[int(np.argmax(values))])


def per_class_metrics(scores: np.ndarray, labels: np.ndarray, threshold) -> dict:
    """Per class: precision, recall, F1, AP, support (ground-truth positives) and predicted
    positives at `threshold` (a number or one per class). Undefined values (a class with no
    positive in the split: recall, F1 and AP) are None; a never-predicted class has precision 0.
    Lists in label order."""
    scores = np.asarray(scores, np.float64)
    truth = np.asarray(labels) > 0.5
    predicted = scores > np.asarray(threshold)
    correct = (predicted & truth).sum(axis=0).astype(float)
    n_predicted = predicted.sum(axis=0).astype(float)
    support = truth.sum(axis=0)
    precision = _safe_ratio(correct, n_predicted)
    recall = _safe_ratio(correct, support)
    present = support > 0
    return {
        "precision": [float(p) for p in precision],
        "recall": [float(r) if ok else None for r, ok in zip(recall, present, strict=True)],
        "F1": [
            _f1(p, r) if ok else None for p, r, ok in zip(precision, recall, present, strict=True)
        ],
        "AP": [
            average_precision(scores[:, i], truth[:, i]) if present[i] else None
            for i in range(truth.shape[1])
        ],
        "support": [int(n) for n in support],
        "predicted": [int(n) for n in n_predicted],
    }


def per_class_thresholds(scores: np.ndarray, labels: np.ndarray, fallback: float) -> np.ndarray:
    """Each class's threshold in 0.05..0.95 maximising its own F1 (choose on validation); a
    class without positives there keeps `fallback`. Ties go to the lowest threshold."""
    truth = np.asarray(labels) > 0.5
    thresholds = np.full(truth.shape[1], float(fallback))
    for i in np.flatnonzero(truth.any(axis=0)):
        f1 = []
        for t in THRESHOLD_GRID:
            predicted = scores[:, i] > t
            correct = float((predicted & truth[:, i]).sum())
            precision = correct / max(predicted.sum(), 1)
            f1.append(_f1(precision, correct / truth[:, i].sum()))
        thresholds[i] = THRESHOLD_GRID[int(np.argmax(f1))]
    return thresholds


def labels_per_image_histogram(multi_hot: np.ndarray) -> dict[str, int]:
    """How many images have 0, 1, 2, ... labels: {"0": n0, "1": n1, ...} up to the maximum."""
    counts = np.bincount(np.asarray(multi_hot).sum(axis=1).astype(int))
    return {str(k): int(n) for k, n in enumerate(counts)}


TABLE_ROWS = (
    ("threshold", ""),
    ("top-3", "_top3"),
    ("val. thr.", "_val_threshold"),
    ("per-class", "_per_class_threshold"),
)


def format_table(results: dict, title: str = "") -> str:
    """The metrics as a small fixed-width table, percentages like the paper's. Rows: at the
    configured threshold, its top-3 variant, and (when present) at the thresholds chosen on
    the validation split: one global threshold (C-* at C-F1's, O-* at O-F1's) and one per
    class."""
    names = ["CP", "CR", "CF1", "OP", "OR", "OF1"]
    lines = [title] if title else []
    lines.append(
        f"{'':10s}" + "".join(f"{h:>8s}" for h in ["C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1"])
    )
    for row, suffix in TABLE_ROWS:
        keys = [name + suffix for name in names]
        if all(k in results for k in keys):
            lines.append(f"{row:10s}" + "".join(f"{100 * results[k]:8.2f}" for k in keys))
    lines.append(
        f"mAP {100 * results['mAP']:.2f}   labels/image {results['labels_per_image']:.2f}"
        f"   images {results['num_images']}"
    )
    if "CF1_threshold" in results:
        lines.append(
            f"thresholds from validation: C-F1 {results['CF1_threshold']:.2f}, "
            f"O-F1 {results['OF1_threshold']:.2f}, per class (F1 each); "
            f"validation C-F1 {100 * results['validation_CF1']:.2f}"
        )
    return "\n".join(lines)
