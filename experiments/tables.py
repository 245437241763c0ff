"""Markdown tables of results over seeds, shared by the experiment scripts."""

import numpy as np


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
