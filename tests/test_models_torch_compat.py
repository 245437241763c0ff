"""The torch-exact layers against torch.nn itself (skipped where torch is not installed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.models import torch_compat

torch = pytest.importorskip("torch")


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def _nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize(
    "size_in,size_out", [(1, 7), (2, 7), (3, 7), (5, 7), (10, 7), (14, 7), (7, 7)]
)
def test_adaptive_avg_pool_matches_torch_bins(size_in, size_out):
    x = np.random.RandomState(size_in).randn(2, size_in, size_in + 3, 4).astype(np.float32)
    ours = torch_compat.adaptive_avg_pool(jnp.asarray(x), size_out)
    ref = torch.nn.functional.adaptive_avg_pool2d(_nchw(x), size_out)
    assert ours.shape == (2, size_out, size_out, 4)
    np.testing.assert_allclose(np.asarray(ours), _nhwc(ref), atol=1e-6)


@pytest.mark.parametrize("size", [7, 8])
def test_stride2_conv_pads_symmetrically_like_torch(size):
    x = np.random.RandomState(0).randn(1, size, size, 3).astype(np.float32)
    layer = torch_compat.conv(5, 3, stride=2, padding=1)
    params = layer.init(jax.random.key(0), x)
    kernel = np.asarray(params["params"]["kernel"])  # HWIO
    ref = torch.nn.functional.conv2d(
        _nchw(x), torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()), stride=2, padding=1
    )
    np.testing.assert_allclose(np.asarray(layer.apply(params, x)), _nhwc(ref), atol=1e-5)


def test_avg_pool_counts_padding_like_torch():
    x = np.random.RandomState(1).randn(2, 5, 6, 3).astype(np.float32)
    ours = torch_compat.avg_pool(jnp.asarray(x), 3, 1, 1)
    ref = torch.nn.functional.avg_pool2d(_nchw(x), 3, stride=1, padding=1)
    np.testing.assert_allclose(np.asarray(ours), _nhwc(ref), atol=1e-6)


def test_max_pool_with_padding_matches_torch():
    x = np.random.RandomState(2).randn(2, 9, 8, 3).astype(np.float32) - 5.0  # all negative
    ours = torch_compat.max_pool(jnp.asarray(x), 3, 2, padding=1)
    ref = torch.nn.functional.max_pool2d(_nchw(x), 3, stride=2, padding=1)
    np.testing.assert_allclose(np.asarray(ours), _nhwc(ref), atol=0)


@pytest.mark.parametrize(
    "window,stride,padding,height,width",
    [(3, 2, 1, 9, 8), (3, 2, 1, 10, 10), (2, 2, 0, 8, 9), (3, 2, 0, 9, 11)],
)
def test_max_pool_gradient_matches_torch_with_ties(window, stride, padding, height, width):
    """ResNet's stem (3/2 padded), VGG (2/2) and Inception (3/2): values from {0, 1, 2} tie in
    most windows, so the gradient must go to the same (first) maximum as torch's, and pixels
    shared by overlapping windows must sum in torch's order (bit-equal)."""
    rng = np.random.RandomState(window * 100 + height)
    x = rng.randint(0, 3, (2, height, width, 3)).astype(np.float32)

    def pool(v):
        return torch_compat.max_pool(v, window, stride, padding)

    out, vjp = jax.vjp(pool, jnp.asarray(x))
    grad = rng.randn(*out.shape).astype(np.float32)
    (ours,) = vjp(jnp.asarray(grad))
    ref_in = _nchw(x).requires_grad_(True)
    ref_out = torch.nn.functional.max_pool2d(ref_in, window, stride=stride, padding=padding)
    ref_out.backward(_nchw(grad))
    np.testing.assert_array_equal(np.asarray(out), _nhwc(ref_out))
    np.testing.assert_array_equal(np.asarray(ours), _nhwc(ref_in.grad))


def test_max_pool_gradient_under_jit_and_bfloat16():
    x = jnp.asarray(np.random.RandomState(5).randn(2, 7, 7, 4), jnp.bfloat16)
    grad = jax.jit(jax.grad(lambda v: torch_compat.max_pool(v, 3, 2, 1).astype(jnp.float32).sum()))
    ours = grad(x)
    assert ours.dtype == jnp.bfloat16
    # Each of the 4 x 4 windows (7 px padded to 9, 3/2) sends its gradient of 1 to one pixel.
    assert float(jnp.sum(ours.astype(jnp.float32))) == 16.0 * 2 * 4


@pytest.mark.parametrize("epsilon", [1e-5, 1e-3])
def test_batchnorm_train_step_and_running_stats_match_torch(epsilon):
    rng = np.random.RandomState(3)
    x = (rng.randn(4, 3, 5, 6) * 2 + 1).astype(np.float32)  # NHWC, 6 channels
    scale, bias = rng.uniform(0.5, 1.5, 6), rng.randn(6)
    mean, var = rng.randn(6), rng.uniform(0.5, 2.0, 6)
    ref = torch.nn.BatchNorm2d(6, eps=epsilon)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(scale))
        ref.bias.copy_(torch.from_numpy(bias))
        ref.running_mean.copy_(torch.from_numpy(mean))
        ref.running_var.copy_(torch.from_numpy(var))
    variables = {
        "params": {
            "scale": jnp.asarray(scale, jnp.float32),
            "bias": jnp.asarray(bias, jnp.float32),
        },
        "batch_stats": {
            "mean": jnp.asarray(mean, jnp.float32),
            "var": jnp.asarray(var, jnp.float32),
        },
    }
    ref.eval()
    ours = torch_compat.BatchNorm(True, epsilon=epsilon)
    np.testing.assert_allclose(
        np.asarray(ours.apply(variables, x)), _nhwc(ref(_nchw(x))), atol=1e-5
    )
    ref.train()
    expected = _nhwc(ref(_nchw(x)))
    out, updates = torch_compat.BatchNorm(False, epsilon=epsilon).apply(
        variables, x, mutable=["batch_stats"]
    )
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)
    stats = updates["batch_stats"]
    np.testing.assert_allclose(np.asarray(stats["mean"]), ref.running_mean.numpy(), atol=1e-6)
    # torch keeps the unbiased batch variance in its running estimate.
    np.testing.assert_allclose(np.asarray(stats["var"]), ref.running_var.numpy(), rtol=1e-5)


def test_batchnorm_in_bfloat16_keeps_float32_parameters_and_statistics():
    x = jnp.asarray(np.random.RandomState(4).randn(2, 3, 3, 4), jnp.bfloat16)
    layer = torch_compat.BatchNorm(False, dtype=jnp.bfloat16)
    variables = layer.init(jax.random.key(0), x)
    out, updates = layer.apply(variables, x, mutable=["batch_stats"])
    assert out.dtype == jnp.bfloat16
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves((variables, updates)))
