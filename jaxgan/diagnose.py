"""Label-dependency diagnostics: does the model predict labels together the way they occur?

    python -m jaxgan.diagnose --workdir=DIR [--compare=OTHER_DIR] [--out=FOLDER]
        [--threshold=configured|global|per_class|0.3] [--checkpoint_step=N|best]
        [--split=test|validation]

On the test split (or validation), for ground truth and for predictions, the co-occurrence matrix
P(j | i) = #(images with i and j) / #(images with i) (row i, column j; the diagonal is 1).
Their distance is the mean |P_pred(j|i) - P_true(j|i)| over ordered pairs i != j whose
conditioning label i has at least `min_support` true and one predicted image. For the pairs
with the strongest true dependency (highest P_true(j|i)), two error rates:
- hallucinated companion: j predicted on images where i is present and j is absent;
- missed companion: j not predicted on images where both i and j are present.
A model that learned label dependency hallucinates companions rarely while missing few.
Also per label the true and predicted rates and the F1, labels per image, the adversarial
phase's log (the critic's Wasserstein estimate, the critic score of G's samples, the losses),
and with `--compare` the label pairs whose joint prediction rate changed most between the
two runs (e.g. what the critic did to a model: compare a run with its no-critic baseline).
Written to FOLDER/diagnostics.json and FOLDER/cooccurrence.png (truth and each run's
predictions side by side, and each run's difference from truth). Works for any dataset and
class names; `experiments/hard_objects.py` is the digit-scenes special case.
"""

import json
import os
import sys

import numpy as np

MIN_SUPPORT = 10  # images with label i needed before P(. | i) is compared


def cooccurrence(multi_hot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P [L, L] with P[i, j] = P(j | i), NaN where label i never occurs; counts [L] of i)."""
    present = np.asarray(multi_hot, bool).astype(np.float64)
    joint = present.T @ present  # joint[i, j] = #(i and j)
    counts = np.diag(joint).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        conditional = joint / counts[:, None]
    conditional[counts == 0] = np.nan
    return conditional, counts.astype(int)


def compared_pairs(true_counts, predicted_counts, min_support: int = MIN_SUPPORT) -> np.ndarray:
    """[L, L] bool: the ordered pairs (i, j), i != j, whose P(j | i) is compared."""
    rows = (np.asarray(true_counts) >= min_support) & (np.asarray(predicted_counts) > 0)
    mask = np.repeat(rows[:, None], len(rows), axis=1)
    np.fill_diagonal(mask, False)
    return mask


def cooccurrence_distance(p_true, p_pred, mask) -> float:
    """Mean |P_pred(j|i) - P_true(j|i)| over the pairs in `mask`."""
    if not mask.any():
        return float("nan")
    return float(np.mean(np.abs(p_pred - p_true)[mask]))


def companion_errors(truth: np.ndarray, predicted: np.ndarray, i: int, j: int) -> dict:
    """For the pair (i -> j): how often j is hallucinated (i present, j absent, j predicted)
    and missed (both present, j not predicted), with the number of images each rate is over."""
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    without = truth[:, i] & ~truth[:, j]
    both = truth[:, i] & truth[:, j]
    return {
        "hallucinated": float(predicted[without, j].mean()) if without.any() else None,
        "hallucinated_over": int(without.sum()),
        "missed": float((~predicted[both, j]).mean()) if both.any() else None,
        "missed_over": int(both.sum()),
    }


def strongest_pairs(p_true, true_counts, top: int, min_support: int = MIN_SUPPORT):
    """The `top` ordered pairs (i, j), i != j, with the highest P_true(j|i) among labels i
    with enough support (ties: by i, then j)."""
    candidates = [
        (-p_true[i, j], i, j)
        for i in range(len(true_counts))
        for j in range(len(true_counts))
        if i != j and true_counts[i] >= min_support and np.isfinite(p_true[i, j])
    ]
    return [(i, j) for _, i, j in sorted(candidates)[:top]]


def diagnose(truth, predicted, class_names, top: int = 10, min_support: int = MIN_SUPPORT):
    """The diagnostics of one model's `predicted` multi-hot labels against `truth` [N, L]:
    the co-occurrence distance, the strongest pairs' companion errors, and per label the true
    and predicted rates and the F1."""
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    p_true, true_counts = cooccurrence(truth)
    p_pred, predicted_counts = cooccurrence(predicted)
    mask = compared_pairs(true_counts, predicted_counts, min_support)
    pairs = []
    for i, j in strongest_pairs(p_true, true_counts, top, min_support):
        pairs.append(
            {
                "given": class_names[i],
                "companion": class_names[j],
                "P_true": float(p_true[i, j]),
                "P_pred": None if np.isnan(p_pred[i, j]) else float(p_pred[i, j]),
                **companion_errors(truth, predicted, i, j),
            }
        )
    truth_rate, predicted_rate = truth.mean(0), predicted.mean(0)
    hits = (truth & predicted).sum(0)
    f1 = 2 * hits / np.maximum(truth.sum(0) + predicted.sum(0), 1)
    return {
        "class_names": list(class_names),
        "num_images": int(len(truth)),
        "labels_per_image": {
            "true": float(truth.sum(1).mean()),
            "predicted": float(predicted.sum(1).mean()),
        },
        "per_label": {
            name: {
                "true_rate": float(truth_rate[k]),
                "predicted_rate": float(predicted_rate[k]),
                "F1": float(f1[k]),
            }
            for k, name in enumerate(class_names)
        },
        "distance": cooccurrence_distance(p_true, p_pred, mask),
        "compared_pairs": int(mask.sum()),
        "min_support": min_support,
        "P_true": _nan_to_none(p_true),
        "P_pred": _nan_to_none(p_pred),
        "true_counts": true_counts.tolist(),
        "predicted_counts": predicted_counts.tolist(),
        "strongest_pairs": pairs,
        "mean_hallucinated": _mean([p["hallucinated"] for p in pairs]),
        "mean_missed": _mean([p["missed"] for p in pairs]),
    }


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _nan_to_none(matrix: np.ndarray) -> list:
    return [[None if np.isnan(v) else float(v) for v in row] for row in matrix]


def _matrix(rows: list) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], np.float64)


def plot(results: dict[str, dict], path: str) -> str:
    """Heatmaps of P(j | i): truth, then each run's predictions, and each run's difference
    from truth (row 2), side by side; saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = list(results)
    first = results[names[0]]
    classes = first["class_names"]
    p_true = _matrix(first["P_true"])
    columns = 1 + len(names)
    size = max(3.0, 0.28 * len(classes) + 1.5)
    fig, axes = plt.subplots(2, columns, figsize=(size * columns, size * 2), squeeze=False)
    panels = [(0, 0, p_true, "ground truth P(j | i)", "viridis", (0, 1))]
    for k, name in enumerate(names, start=1):
        p_pred = _matrix(results[name]["P_pred"])
        d = results[name]["distance"]
        panels.append((0, k, p_pred, f"{name}: predicted P(j | i)", "viridis", (0, 1)))
        panels.append(
            (1, k, p_pred - p_true, f"{name}: predicted - truth (distance {d:.3f})", "RdBu_r",
             (-0.5, 0.5))
        )  # fmt: skip
    axes[1, 0].axis("off")
    axes[1, 0].text(
        0.0, 0.5, "row i: given label i\ncolumn j: companion j\n"
        f"distance: mean |difference|\nover pairs with >= {first['min_support']}\nimages of i",
        fontsize=9, va="center",
    )  # fmt: skip
    ticks = range(len(classes))
    for row, col, matrix, title, cmap, (low, high) in panels:
        ax = axes[row, col]
        image = ax.imshow(matrix, cmap=cmap, vmin=low, vmax=high)
        ax.set_title(title, fontsize=9)
        if len(classes) <= 30:
            ax.set_xticks(ticks, classes, fontsize=7, rotation=90)
            ax.set_yticks(ticks, classes, fontsize=7)
        ax.set_xlabel("companion j", fontsize=8)
        ax.set_ylabel("given i", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def most_changed_pairs(first: np.ndarray, second: np.ndarray, truth: np.ndarray, names, top):
    """The label pairs {i, j} that co-occur in `truth` whose share of images predicted with
    both changed most from the `first` predictions to the `second` (a pair the second model
    suppresses is one it predicts together less often)."""

    def joint(matrix):
        matrix = np.asarray(matrix, np.float64)
        return matrix.T @ matrix / len(matrix)

    true_joint, change = joint(truth), joint(second) - joint(first)
    candidates = np.triu(true_joint > 0, k=1)
    order = np.argsort(np.where(candidates, -np.abs(change), np.inf), axis=None)
    pairs = []
    for flat in order[: min(top, int(candidates.sum()))]:
        i, j = np.unravel_index(flat, change.shape)
        pairs.append({"pair": [names[i], names[j]], "true": float(true_joint[i, j]),
                      "change": float(change[i, j])})  # fmt: skip
    return pairs


def adversarial_log(workdir: str) -> list[dict]:
    """The adversarial phase's progress records (critic's Wasserstein estimate, critic score
    of G's samples, losses, gradient penalty) from the run's metrics.jsonl; [] without one."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r.get("phase") == "adversarial" and "eval" not in r]


def split_predictions(workdir: str, step=None, threshold: str = "configured", split="test"):
    """(class names, true multi-hot, predicted multi-hot) of a workdir's checkpoint on its
    `split` (test or validation); the training split is never read."""
    from jaxgan import evaluate

    classifier = evaluate.load_classifier(workdir, step)
    scores, labels = evaluate.classifier_scores(classifier, split)
    thresholds = evaluate.choose_thresholds(classifier, threshold)
    return classifier.class_names, labels > 0.5, scores > thresholds[None, :]


def format_summary(results: dict[str, dict]) -> str:
    """A few lines: each run's distance and mean companion errors, then the strongest pairs."""
    lines = []
    for name, r in results.items():
        lines.append(
            f"{name}: co-occurrence distance {r['distance']:.4f} over {r['compared_pairs']} "
            f"pairs; strongest pairs: hallucinated companions {_pct(r['mean_hallucinated'])}, "
            f"missed companions {_pct(r['mean_missed'])}"
        )
    header = " | ".join(f"{name}: P_pred halluc. missed" for name in results)
    lines.append(f"given -> companion: P_true | {header}")
    first = next(iter(results.values()))
    for k, pair in enumerate(first["strongest_pairs"]):
        cells = []
        for r in results.values():
            other = r["strongest_pairs"][k]
            cells.append(
                f"{_num(other['P_pred'])} {_pct(other['hallucinated'])} {_pct(other['missed'])}"
            )
        lines.append(
            f"  {pair['given']} -> {pair['companion']}: {pair['P_true']:.2f} | " + " | ".join(cells)
        )
    return "\n".join(lines)


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def run(workdirs: list[str], out: str, step=None, threshold="configured", top=10, split="test"):
    """Diagnoses each workdir (named by its folder), writes JSON and PNG, prints a summary.
    Runs compared must have been evaluated on the same images with the same labels."""
    from jaxgan.outputs import check_writable

    check_writable(out, ["diagnostics.json", "cooccurrence.png"], flag="--out")  # before work
    results, predictions, truth = {}, [], None
    for workdir in workdirs:
        names, labels, predicted = split_predictions(workdir, step, threshold, split)
        if truth is not None and (names != truth[0] or not np.array_equal(labels, truth[1])):
            raise ValueError(
                f"{workdir} and {workdirs[0]} were not evaluated on the same {split} split "
                f"(another dataset, labels file or class list); compare runs of one dataset"
            )
        truth = (names, labels)
        label = os.path.basename(os.path.normpath(workdir))
        while label in results:
            label += "'"
        results[label] = diagnose(labels, predicted, names, top)
        results[label]["adversarial_log"] = adversarial_log(workdir)
        predictions.append(predicted)
    report = {"threshold": threshold, "split": split, "runs": results}
    if len(predictions) == 2:
        report["most_changed_pairs"] = most_changed_pairs(*predictions, truth[1], truth[0], top)
    os.makedirs(out, exist_ok=True)
    json_path = os.path.join(out, "diagnostics.json")
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1)
    png_path = plot(results, os.path.join(out, "cooccurrence.png"))
    print(format_summary(results))
    print(f"wrote {json_path} and {png_path}")
    return results


def main(argv):
    from absl import flags, logging

    del argv
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    workdirs = [f.workdir] + ([f.compare] if f.compare else [])
    out = f.out or os.path.join(f.workdir, "diagnostics")
    try:
        run(workdirs, out, f.checkpoint_step, f.threshold, f.top_pairs, f.split)
    except ValueError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "A trained run's workdir.")
    flags.DEFINE_string("compare", None, "Another run's workdir, shown side by side.")
    flags.DEFINE_string("out", None, "Output folder (default WORKDIR/diagnostics).")
    flags.DEFINE_string("checkpoint_step", None, "A step, 'best' or 'latest' (default).")
    flags.DEFINE_string("threshold", "configured", "configured | global | per_class | NUMBER.")
    flags.DEFINE_integer("top_pairs", 10, "How many of the strongest pairs to report.")
    flags.DEFINE_enum("split", "test", ["test", "validation"], "The split to diagnose.")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
