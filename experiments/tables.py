"""Markdown tables of results over seeds, shared by the experiment scripts."""

import json
import os

import numpy as np

# Table header -> result key: test metrics at 0.5 and at the validation-tuned threshold, then the
# validation C-F1 (the only number used to choose settings).
COLUMNS = {
    "C-F1": "CF1",
    "C-F1 (val. thr.)": "CF1_val_threshold",
    "O-F1": "OF1",
    "O-F1 (val. thr.)": "OF1_val_threshold",
    "mAP": "mAP",
    "C-P": "CP",
    "C-R": "CR",
    "labels/image": "labels_per_image",
    "val. C-F1": "validation_CF1",
}


def format_table(results: dict, columns: dict) -> str:
    """Mean ± std over seeds of each column (header -> result key); percentages, except
    labels/image."""
    lines = [
        "| method | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, runs in results.items():
        cells = []
        for key in columns.values():
            values = np.array([r[key] for r in runs]) * (1 if key == "labels_per_image" else 100)
            cells.append(f"{values.mean():.2f} ± {values.std():.2f}")
        lines.append(f"| {name} (n={len(runs)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(out: str, results: dict, table: str) -> None:
    """`out`.json (every number, with what made it) and `out`.md (the table)."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(out + ".md", "w") as f:
        f.write(table.rstrip("\n") + "\n")
