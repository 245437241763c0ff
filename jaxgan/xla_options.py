"""XLA compiler options for the compiled steps, per backend.

On CPU, XLA (jaxlib 0.10) hands convolutions, dots and reductions to the YNNPACK library by
default. For the convolutions of our backbones that loses: fed to XLA's own Eigen
convolutions instead, ResNet-18's convolutions (forward and both gradients, 112 px, batch 16)
take 0.67x the time, the whole BCE step 0.85x, and ResNet-50's bfloat16 BCE step at 224 px
0.58x (experiments/speed.md). YNNPACK stays on for dots (the critic's dense layers) and for
reductions (BatchNorm's statistics), where XLA's own loops are several times slower. GPUs and
TPUs get no options.

Options given per compilation override XLA_FLAGS, so a user's own setting of the same flag in
XLA_FLAGS is respected: then these options are not given.
"""

import os

# Library fusions XLA:CPU may hand to YNNPACK: all its defaults but convolutions.
CPU_YNN_FUSIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": CPU_YNN_FUSIONS}


def compiler_options(platform: str) -> dict:
    """`jax.jit(..., compiler_options=...)` for steps compiled for `platform` ('cpu', 'gpu',
    'tpu'): a fresh dict, empty where there is nothing to change."""
    if platform != "cpu":
        return {}
    user_flags = os.environ.get("XLA_FLAGS", "")
    return {k: v for k, v in CPU_OPTIONS.items() if f"--{k}" not in user_flags}
