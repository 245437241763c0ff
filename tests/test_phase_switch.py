"""experiments/phase_switch.py end to end at toy size: two ways into the adversarial phase
from one supervised phase, one seed."""

import json
import os
import subprocess
import sys

import pytest
from tiny_run import tiny_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_the_variants_share_the_supervised_phase(tmp_path, data_dir):
    out = str(tmp_path / "results" / "switch")
    command = [
        sys.executable,
        "experiments/phase_switch.py",
        "--variants=paper,reset",
        "--seeds=0",
        f"--workdir={tmp_path / 'runs'}",
        f"--out={out}",
        *tiny_flags(
            schedule__supervised_steps=2,
            schedule__adversarial_steps=2,
            schedule__log_every=1,
            data__data_dir=data_dir,
        ),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out + ".json") as f:
        rows = json.load(f)["results"]
    paper, reset = rows["+ WGAN-gp, paper"][0], rows["+ WGAN-gp, reset"][0]
    assert paper["workdir"] != reset["workdir"]
    assert os.path.basename(paper["workdir"]).startswith("wgan_")  # seed_table's own arm
    baseline = next(runs for name, runs in rows.items() if name.startswith("BCE only"))[0]
    paired = rows["+ WGAN-gp, reset minus no critic (paired)"][0]
    assert paired["validation_CF1"] == pytest.approx(
        reset["validation_CF1"] - baseline["validation_CF1"]
    )
    # Both arms start from one supervised phase: the same loss at the last supervised log.
    assert paper["train_loss_before_switch"] == reset["train_loss_before_switch"]
    assert os.path.getsize(out + ".md") > 0
    runs = os.listdir(tmp_path / "runs")
    assert len([name for name in runs if name.startswith("supervised_")]) == 2  # 2, and 2 + 2
