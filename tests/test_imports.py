"""Training, evaluation, prediction and the diagnostics import no TensorFlow (accelerator
hosts may lack it): only preparing a dataset (`jaxgan.data.prepare`, the TFDS builders) does.
The converter must not need torch either. The end-to-end run with TensorFlow made
unimportable is tests/test_without_tensorflow.py."""

import os
import subprocess
import sys

TF_FREE = [
    "jaxgan.choices",
    "jaxgan.command_line",
    "jaxgan.sampling",
    "jaxgan.losses",
    "jaxgan.state",
    "jaxgan.flops",
    "jaxgan.steps",
    "jaxgan.parallel",
    "jaxgan.compiled",
    "jaxgan.pace",
    "jaxgan.metrics",
    "jaxgan.checkpoint",
    "jaxgan.models",
    "jaxgan.models.resnet",
    "jaxgan.models.critic",
    "jaxgan.models.vgg",
    "jaxgan.models.inception",
    "jaxgan.weights",
    "jaxgan.weights.bounds",
    "jaxgan.weights.torch_pickle",
    "jaxgan.weights.pth",
    "jaxgan.weights.safetensors",
    "jaxgan.weights.source",
    "jaxgan.weights.mapping",
    "jaxgan.weights.pretrained",
    "jaxgan.convert",
    "jaxgan.train",
    "jaxgan.evaluate",
    "jaxgan.predict",
    "jaxgan.diagnose",
    "jaxgan.main",
    "jaxgan.metric_writer",
    "jaxgan.data",
    "jaxgan.data.augment",
    "jaxgan.data.records",
    "jaxgan.data.datasets",
    "jaxgan.data.input_pipeline",
    "jaxgan.data.image_files",
    "jaxgan.data.image_input",
    "jaxgan.data.digit_scenes",
    "jaxgan.data.coco",
    "jaxgan.data.nuswide",
    "jaxgan.data.custom",
]


def test_core_modules_import_without_tensorflow_or_torch():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in TF_FREE)
        + "bad = sorted(m for m in sys.modules if m.startswith(('tensorflow', 'torch')))\n"
        + "assert not bad, bad[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_step_benchmark_imports_without_tensorflow():
    """benchmarks/steps.py runs on accelerator hosts that may lack TensorFlow."""
    code = (
        "import importlib.util, sys\n"
        "sys.path.insert(0, 'benchmarks')\n"  # as `python benchmarks/steps.py` has it
        "spec = importlib.util.spec_from_file_location('steps', 'benchmarks/steps.py')\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "bad = sorted(m for m in sys.modules if m.startswith('tensorflow'))\n"
        "assert not bad, bad[:5]\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
