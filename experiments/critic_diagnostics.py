"""What the critic did to a model: its training curves, and the labels and label pairs it moved.

    python experiments/critic_diagnostics.py --bce=RUN_DIR --adversarial=RUN_DIR [--out=PREFIX]

Both workdirs come from `experiments/paired_table.py` (which leaves `validation_scores.npz`
in each finished run): the BCE-only arm and the + WGAN-gp arm of the same seed. On the
validation split, at threshold 0.5:

- per label: the true positive rate vs each arm's predicted rate, and each arm's F1;
- label pairs (i, j) that co-occur in the ground truth: how often each arm predicts them
  together (a share of all images), listing the pairs whose joint rate the critic changed
  most (a pair it suppresses is one it predicts together less often than BCE does);
- the co-occurrence distance of each arm: mean |P_pred(j|i) - P_true(j|i)| over ordered pairs
  whose label i has at least `--min_support` validation positives and co-occurs with j;
- from the adversarial run's log: the critic's Wasserstein estimate, the critic score of G's
  samples, G's BCE and the gradient penalty over the adversarial phase, and labels per image
  at every evaluation (`--config.schedule.eval_every` makes more of them).
"""

import json
import os

import numpy as np
from absl import app, flags

_BCE = flags.DEFINE_string("bce", None, "Workdir of the BCE-only arm.", required=True)
_ADV = flags.DEFINE_string("adversarial", None, "Workdir of the + WGAN-gp arm.", required=True)
_OUT = flags.DEFINE_string("out", "", "Write PREFIX.md and PREFIX.json (default: print only).")
_MIN_SUPPORT = flags.DEFINE_integer("min_support", 5, "Validation positives a label i needs.")
_PAIRS = flags.DEFINE_integer("pairs", 8, "How many most-changed pairs to list.")
_NAMES = flags.DEFINE_list("class_names", [], "Label names, when the runs did not save them.")


def load_scores(workdir: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Validation probabilities, labels and class names that paired_table.py saved."""
    path = os.path.join(workdir, "validation_scores.npz")
    if not os.path.exists(path):
        raise app.UsageError(f"{path} not found; finish the run with experiments/paired_table.py")
    with np.load(path) as data:
        scores, labels = data["scores"], data["labels"].astype(bool)
        names = data["class_names"] if "class_names" in data else range(labels.shape[1])
        return scores, labels, [str(n) for n in names]


def conditional(matrix: np.ndarray) -> np.ndarray:
    """P(j | i) = #(i and j) / #i from a [N, L] boolean matrix; NaN where #i = 0."""
    joint = matrix.T.astype(float) @ matrix.astype(float)
    counts = np.diag(joint)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, joint / counts, np.nan)


def cooccurrence_distance(predicted: np.ndarray, truth: np.ndarray, min_support: int) -> float:
    """Mean |P_pred(j|i) - P_true(j|i)| over ordered pairs i != j with support in the truth."""
    true_cond, pred_cond = conditional(truth), conditional(predicted)
    joint = truth.T.astype(int) @ truth.astype(int)
    support = (np.diag(joint)[:, None] >= min_support) & (joint > 0)
    np.fill_diagonal(support, False)
    gaps = np.abs(np.nan_to_num(pred_cond) - true_cond)[support]
    return float(gaps.mean()) if gaps.size else float("nan")


def per_label_f1(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    tp = (predicted & truth).sum(0)
    return 2 * tp / np.maximum(predicted.sum(0) + truth.sum(0), 1)


def log_curves(workdir: str) -> tuple[list[dict], list[dict]]:
    """(progress lines of the adversarial phase, evaluations) from the run's metrics.jsonl."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    progress = [r for r in records if r.get("phase") == "adversarial" and "eval" not in r]
    evals = [
        {"step": r["step"], "phase": r.get("phase"), **r["eval"]} for r in records if "eval" in r
    ]
    return progress, evals


def main(argv):
    del argv
    bce_scores, truth, names = load_scores(_BCE.value)
    if _NAMES.value:
        if len(_NAMES.value) != truth.shape[1]:
            raise app.UsageError(f"--class_names: {truth.shape[1]} names needed")
        names = _NAMES.value
    adv_scores, adv_truth, _ = load_scores(_ADV.value)
    if not np.array_equal(truth, adv_truth):
        raise app.UsageError("the two runs were evaluated on different validation sets")
    arms = {"BCE only": bce_scores > 0.5, "+ WGAN-gp": adv_scores > 0.5}
    lines, report = [], {}

    lines.append("| label | true rate | " + " | ".join(f"{a} rate | {a} F1" for a in arms) + " |")
    lines.append("|---|---|" + "---|---|" * len(arms))
    for i, name in enumerate(names):
        cells = [f"{100 * truth[:, i].mean():.1f}"]
        for predicted in arms.values():
            cells += [
                f"{100 * predicted[:, i].mean():.1f}",
                f"{100 * per_label_f1(predicted, truth)[i]:.1f}",
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")

    def joint_rate(matrix):
        return matrix.T.astype(float) @ matrix.astype(float) / len(matrix)

    true_joint = joint_rate(truth)
    bce_joint, adv_joint = joint_rate(arms["BCE only"]), joint_rate(arms["+ WGAN-gp"])
    candidates = np.triu(true_joint > 0, k=1)  # pairs that do co-occur, each once
    change = adv_joint - bce_joint
    order = np.argsort(np.where(candidates, -np.abs(change), np.inf), axis=None)[: _PAIRS.value]
    lines.append(
        "| pair predicted together (% of images) | truth | BCE only | + WGAN-gp | change |"
    )
    lines.append("|---|---|---|---|---|")
    pairs = []
    for flat in order:
        i, j = np.unravel_index(flat, change.shape)
        if not candidates[i, j]:
            break
        row = {"i": names[i], "j": names[j], "truth": float(true_joint[i, j]),
               "bce": float(bce_joint[i, j]), "adversarial": float(adv_joint[i, j])}  # fmt: skip
        pairs.append(row)
        lines.append(
            f"| {row['i']} + {row['j']} | {100 * row['truth']:.1f} | {100 * row['bce']:.1f} | "
            f"{100 * row['adversarial']:.1f} | {100 * (row['adversarial'] - row['bce']):+.1f} |"
        )
    lines.append("")
    distances = {a: cooccurrence_distance(p, truth, _MIN_SUPPORT.value) for a, p in arms.items()}
    per_image = {a: float(p.sum(1).mean()) for a, p in arms.items()}
    lines.append(
        "co-occurrence distance (validation): "
        + ", ".join(f"{a} {100 * d:.2f}" for a, d in distances.items())
        + f"; labels/image: truth {truth.sum(1).mean():.2f}, "
        + ", ".join(f"{a} {v:.2f}" for a, v in per_image.items())
    )
    progress, evals = log_curves(_ADV.value)
    lines.append("")
    lines.append("| step | Wasserstein est. | D(G sample) | G's BCE | gradient penalty |")
    lines.append("|---|---|---|---|---|")
    for r in progress:
        lines.append(
            f"| {r['step']} | {r.get('wasserstein', float('nan')):.3f} | "
            f"{r.get('critic_score', float('nan')):.3f} | {r.get('bce', float('nan')):.3f} | "
            f"{r.get('gradient_penalty', float('nan')):.3f} |"
        )
    if len(evals) > 1:
        lines.append("")
        lines.append("| step | labels/image (test) | val. C-F1 |")
        lines.append("|---|---|---|")
        for r in evals:
            lines.append(
                f"| {r['step']} | {r['labels_per_image']:.2f} | "
                f"{100 * r.get('validation_CF1', float('nan')):.2f} |"
            )
    report = {"distances": distances, "labels_per_image": per_image, "pairs": pairs,
              "progress": progress, "evals": evals}  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if _OUT.value:
        with open(_OUT.value + ".md", "w") as f:
            f.write(text + "\n")
        with open(_OUT.value + ".json", "w") as f:
            json.dump(report, f, indent=1, default=float)


if __name__ == "__main__":
    app.run(main)
