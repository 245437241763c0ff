"""The model, loss and step modules must import without TensorFlow (accelerator hosts may
lack it); only jaxgan.data and the training loop that feeds from it may import it."""

import subprocess
import sys

TF_FREE = [
    "jaxgan.sampling",
    "jaxgan.losses",
    "jaxgan.state",
    "jaxgan.steps",
    "jaxgan.parallel",
    "jaxgan.metrics",
    "jaxgan.checkpoint",
    "jaxgan.models",
    "jaxgan.models.resnet",
    "jaxgan.models.discriminator",
    "jaxgan.models.vgg",
    "jaxgan.models.inception",
    "jaxgan.models.convert",
    "jaxgan.convert",
]


def test_core_modules_do_not_import_tensorflow():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in TF_FREE)
        + "bad = sorted(m for m in sys.modules if m.startswith('tensorflow'))\n"
        + "assert not bad, bad[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
