"""The compiler options the steps are compiled with: convolutions leave YNNPACK on CPU only,
results stay those of XLA's defaults, and a user's own XLA_FLAGS setting wins."""

import re

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan import xla_options
from jaxgan.models.torch_compat import BatchNorm, conv


def _conv_bn_grads():
    """Gradients of a conv + BatchNorm + dense layer: a conv, reductions and a dot."""
    # 32 channels: smaller convolutions never go to YNNPACK, whatever the options.
    x = jnp.asarray(np.random.RandomState(0).randn(2, 8, 8, 32), jnp.float32)
    layer, norm = conv(32, 3, 1, 1), BatchNorm(use_running_average=False)
    params = layer.init(jax.random.key(0), x)
    bn = norm.init(jax.random.key(1), layer.apply(params, x))
    dense = jnp.asarray(np.random.RandomState(1).randn(32, 5), jnp.float32)

    def loss(params, dense, x):
        y, _ = norm.apply(bn, layer.apply(params, x), mutable=["batch_stats"])
        return jnp.sum(jnp.tanh(jnp.mean(y, axis=(1, 2)) @ dense))

    return jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, dense, x), (params, dense, x)


def _entry_ops(compiled) -> list[str]:
    """The opcode of every instruction of the optimised program's entry computation."""
    entry = compiled.as_text().split("\nENTRY ", 1)[1]
    return re.findall(r"^\s+(?:ROOT )?%\S+ = \S+ ([\w-]+)\(", entry, flags=re.MULTILINE)


def test_cpu_convolutions_leave_ynnpack_and_results_stay_the_same():
    lowered, args = _conv_bn_grads()
    options = xla_options.compiler_options("cpu")
    default = lowered.compile()
    assert "convolution" not in _entry_ops(default), "XLA's default should fuse them to YNNPACK"
    tuned = lowered.compile(options)
    # The forward and the kernel-gradient convolutions run as XLA's own ops...
    assert _entry_ops(tuned).count("convolution") == 2
    # ...while dots and reductions still go to YNNPACK.
    assert '"__ynn_fusion"' in tuned.as_text()
    for ours, ref in zip(
        jax.tree.leaves(tuned(*args)), jax.tree.leaves(default(*args)), strict=True
    ):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-5, atol=1e-6)


def test_no_options_for_accelerators():
    assert xla_options.compiler_options("gpu") == {}
    assert xla_options.compiler_options("tpu") == {}


def test_a_users_own_flag_wins(monkeypatch):
    flag = "--xla_cpu_experimental_ynn_fusion_type=individual_dot"
    monkeypatch.setenv("XLA_FLAGS", f"--xla_force_host_platform_device_count=4 {flag}")
    assert "xla_cpu_experimental_ynn_fusion_type" not in xla_options.compiler_options("cpu")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    assert "xla_cpu_experimental_ynn_fusion_type" in xla_options.compiler_options("cpu")
