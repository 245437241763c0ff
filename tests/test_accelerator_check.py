"""experiments/accelerator_check.py, tiny, on the CPU, with TensorFlow made unimportable:
it prepares its generated COCO-shaped data, trains both phases and prints its table."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "accelerator_check.py")
BLOCKED = (
    "import runpy, sys; sys.modules['tensorflow'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.mark.slow
def test_the_accelerator_check_runs_tiny_without_tensorflow(tmp_path):
    data = str(tmp_path / "data")
    env = {**os.environ, "PYTHONPATH": ROOT}
    for extra in (["--prepare", "--images=256"], ["--steps=4"]):
        result = subprocess.run(
            [sys.executable, "-c", BLOCKED, SCRIPT, "--tiny", f"--data_dir={data}",
             f"--workdir={tmp_path / 'runs'}", *extra],
            capture_output=True, text=True, timeout=900, env=env, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "TensorFlow not loaded (made unimportable)" in result.stdout
    rows = [line for line in lines if line.startswith(("| supervised", "| adversarial"))]
    assert len(rows) == 2
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 10 and all(cells)
        assert float(cells[2]) > 0 and float(cells[3]) > 0  # loop and compiled steps/s
    assert any(line.startswith("peak device memory:") for line in lines)
