"""Layers that compute exactly what their torch.nn counterparts compute, in NHWC.

The converted torchvision weights only give torchvision's accuracy if every layer does the same
arithmetic: convolutions pad symmetrically as torch does (Flax's 'SAME' puts the odd pixel of a
stride-2 conv on the bottom/right, torch pads both sides), average pooling counts padded zeros,
adaptive average pooling uses torch's overlapping bins, and BatchNorm keeps torch's running
statistics (momentum 0.1 on the new batch, unbiased variance in the running estimate).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

# torchvision's ResNet/VGG conv init (kaiming normal, fan_out, ReLU gain); only used from scratch.
KAIMING_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(
    features,
    kernel,
    stride=1,
    padding=0,
    use_bias=False,
    dtype=jnp.float32,
    name=None,
):
    """torch.nn.Conv2d; `kernel` and `padding` are ints or (h, w) pairs, padding symmetric."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return nn.Conv(
        features,
        (kh, kw),
        strides=(stride, stride),
        padding=((ph, ph), (pw, pw)),
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=KAIMING_FAN_OUT,
        name=name,
    )


def _window_slices(x, window, stride, out_h, out_w):
    """The window's offsets (row-major, torch's scan order) and the strided view at each."""
    for i in range(window):
        for j in range(window):
            view = x[
                :,
                i : i + stride * (out_h - 1) + 1 : stride,
                j : j + stride * (out_w - 1) + 1 : stride,
            ]
            yield (i, j), view


def _pad_to_minus_inf(x, padding):
    if not padding:
        return x
    pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    return jnp.pad(x, pads, constant_values=-jnp.inf)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, stride, padding):
    x = _pad_to_minus_inf(x, padding)
    out_h = (x.shape[1] - window) // stride + 1
    out_w = (x.shape[2] - window) // stride + 1
    views = (view for _, view in _window_slices(x, window, stride, out_h, out_w))
    return functools.reduce(jnp.maximum, views)


def _max_pool_fwd(x, window, stride, padding):
    out = _max_pool(x, window, stride, padding)
    return out, (x, out)


def _max_pool_bwd(window, stride, padding, residuals, grad):
    """torch's max-pool gradient: each window's gradient goes to its first maximum in row-major
    order (torch scans the window and keeps a new value only if strictly greater); windows
    that overlap add up. Built from the same strided views as the forward, so XLA compiles it
    into elementwise loops instead of a select-and-scatter."""
    x, out = residuals
    padded = _pad_to_minus_inf(x, padding)
    height, width = padded.shape[1], padded.shape[2]
    out_h, out_w = out.shape[1], out.shape[2]
    taken = jnp.zeros(out.shape, bool)
    zero = jnp.zeros((), grad.dtype)
    routed = []
    for (i, j), view in _window_slices(padded, window, stride, out_h, out_w):
        chosen = (view == out) & ~taken
        taken = taken | chosen
        # Put each routed value back at the pixel it came from: pixel (i + stride * r, ...).
        pads = (
            (0, 0, 0),
            (i, height - i - stride * (out_h - 1) - 1, stride - 1),
            (j, width - j - stride * (out_w - 1) - 1, stride - 1),
            (0, 0, 0),
        )
        routed.append(jax.lax.pad(jnp.where(chosen, grad, zero), zero, pads))
    # Summed in the order torch accumulates a pixel's windows (output rows, then columns, i.e.
    # window offsets from the last to the first), so that the sums round as torch's do.
    total = functools.reduce(jnp.add, routed[::-1])
    if padding:
        total = total[:, padding : height - padding, padding : width - padding]
    return (total,)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x, window, stride, padding=0):
    """torch.nn.MaxPool2d with ceil_mode=False; padded pixels never win (they are -inf).

    The forward is a maximum over the window's strided views and the gradient is torch's (see
    `_max_pool_bwd`), where flax's pooling makes XLA:CPU build a select-and-scatter, which is
    slow there (docs/performance.md).
    """
    return _max_pool(x, window, stride, padding)


def avg_pool(x, window, stride, padding=0):
    """torch.nn.functional.avg_pool2d with count_include_pad=True (torch's default)."""
    return nn.avg_pool(
        x,
        (window, window),
        strides=(stride, stride),
        padding=((padding, padding),) * 2,
        count_include_pad=True,
    )


def _adaptive_bins(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] averaging matrix of torch's AdaptiveAvgPool: bin i covers
    [floor(i * n / m), ceil((i + 1) * n / m)), so bins overlap when n is not a multiple of m
    and repeat pixels when n < m."""
    matrix = np.zeros((size_out, size_in), np.float32)
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = -(-((i + 1) * size_in) // size_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def adaptive_avg_pool(x, output_size):
    """torch.nn.AdaptiveAvgPool2d(output_size) on NHWC `x`."""
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    rows = jnp.asarray(_adaptive_bins(x.shape[1], out_h))
    cols = jnp.asarray(_adaptive_bins(x.shape[2], out_w))
    pooled = jnp.einsum("bhwc,oh,pw->bopc", x.astype(jnp.float32), rows, cols)
    return pooled.astype(x.dtype)


class BatchNorm(nn.Module):
    """torch.nn.BatchNorm2d over the last axis of `x`.

    Training normalises with the biased batch variance and updates the running statistics as
    torch does: `running = (1 - momentum) * running + momentum * batch`, with the batch variance
    made unbiased (n / (n - 1)) for the running estimate. Statistics are computed in float32
    whatever the compute dtype. Under jit on a global (sharded) batch the mean runs over the
    whole batch, i.e. synchronised BatchNorm across devices.
    """

    use_running_average: bool
    epsilon: float = 1e-5
    momentum: float = 0.1  # torch's convention: the weight of the new batch
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        running_mean = self.variable(
            "batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32)
        )
        running_var = self.variable(
            "batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32)
        )
        x32 = x.astype(jnp.float32)
        if self.use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x32, axis=axes)
            var = jnp.mean(jnp.square(x32 - mean), axis=axes)
            if not self.is_initializing():
                count = x.size // channels
                unbiased = var * (count / max(count - 1, 1))
                running_mean.value = (1 - self.momentum) * running_mean.value + self.momentum * mean
                running_var.value = (
                    1 - self.momentum
                ) * running_var.value + self.momentum * unbiased
        multiplier = scale * jax.lax.rsqrt(var + self.epsilon)
        return (x32 * multiplier + (bias - mean * multiplier)).astype(self.dtype)
