"""Once a dataset is prepared, TensorFlow is not needed: in a process where it cannot be
imported (`sys.modules["tensorflow"] = None`), train both phases, evaluate, predict and run
the diagnostics on the prepared embedded dataset."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxgan.data.datasets import get_source

pytestmark = pytest.mark.slow  # a whole run in another process

HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPT = """
import sys
sys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError from here on
sys.path.insert(0, {here!r})
from tiny_run import tiny_config
from jaxgan import diagnose, evaluate, predict, train

config = tiny_config({data_dir!r})
results = train.train_and_evaluate(config, {workdir!r})
report = evaluate.evaluate_checkpoint(None, {workdir!r})
records, skipped = predict.run_predict({workdir!r}, [{images!r}])
diagnose.run([{workdir!r}], {out!r})
loaded = sorted(m for m, v in sys.modules.items() if m.startswith("tensorflow") and v)
print("RESULT", {{"phases": sorted(results), "step": report["step"],
                  "predicted": len(records), "tensorflow": loaded}})
"""


def test_train_evaluate_predict_and_diagnose_without_tensorflow(data_dir, tmp_path):
    from tiny_run import tiny_config

    source = get_source(tiny_config(data_dir).data)  # prepared here, where TensorFlow is
    images, _ = source.reader("test").read(range(3))
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"test_{i}.png")
    workdir, out = str(tmp_path / "run"), str(tmp_path / "diagnostics")
    code = SCRIPT.format(here=HERE, data_dir=data_dir, workdir=workdir, images=str(folder), out=out)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
        cwd=os.path.dirname(HERE),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT"))
    summary = eval(line.split(" ", 1)[1])  # a dict literal the script printed
    assert summary == {
        "phases": ["adversarial", "supervised"], "step": 4, "predicted": 3, "tensorflow": [],
    }  # fmt: skip
    with open(os.path.join(out, "diagnostics.json")) as f:
        assert json.load(f)
    assert np.isfinite(json.load(open(os.path.join(workdir, "eval.json")))["metrics"]["mAP"])
