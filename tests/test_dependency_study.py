"""experiments/dependency_study.py end to end at toy size: the levels' small builds, 16 px,
width 4, two steps of each phase, one seed."""

import json
import os
import subprocess
import sys

import pytest
from tiny_run import tiny_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_the_study_runs_end_to_end(tmp_path, data_dir):
    out = str(tmp_path / "results" / "study")
    command = [
        sys.executable,
        "experiments/dependency_study.py",
        "--levels=shuffled,strong",
        "--supervised_steps=2",
        "--seeds=0",
        "--small",
        f"--workdir={tmp_path / 'runs'}",
        f"--out={out}",
        *tiny_flags(schedule__adversarial_steps=2, data__data_dir=data_dir),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out + ".json") as f:
        study = json.load(f)
    assert set(study["levels"]) == {"shuffled", "strong"}
    assert study["levels"]["strong"]["builder_config"] == "strong_small"
    summary = {level: study["levels"][level]["summary"] for level in study["levels"]}
    assert summary["strong"]["p_comp_given_ctx"] > summary["shuffled"]["p_comp_given_ctx"]
    assert [cell["level"] for cell in study["cells"]] == ["shuffled", "strong"]
    for name, rows in study["tables"].items():
        paired = next(runs for row, runs in rows.items() if "(paired)" in row)
        arms = [runs for row, runs in rows.items() if "(paired)" not in row]
        assert len(paired) == 1 and paired[0]["seed"] == 0, name
        for key in ("CF1", "distance", "hallucinated", "hard_recall"):
            assert paired[0][key] == pytest.approx(arms[-1][0][key] - arms[0][0][key]), key
    for suffix in (".md", ".png"):
        assert os.path.getsize(out + suffix) > 0
    with open(out + ".md") as f:
        markdown = f.read()
    assert "P(comp|ctx)" in markdown and "shuffled, 2 supervised steps" in markdown
