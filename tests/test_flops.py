"""jaxgan.flops against hand counts of the project's ResNets, against XLA's own count on the
CPU, and through every kind of sub-jaxpr. Tracing only (shapes, no weights), except the XLA
comparisons, which compile tiny functions."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxgan import flops, runtime
from jaxgan.models import create_generator
from jaxgan.models.resnet import resnet_small

LABELS = 80


def _conv(side, kernel, stride, padding, cin, cout):
    """(output side, multiply-adds) of a square convolution over a square input."""
    out = (side + 2 * padding - kernel) // stride + 1
    return out, kernel * kernel * cin * cout * out * out


def analytic_resnet_flops(stage_sizes, bottleneck, size, labels, width=64):
    """2 × multiply-adds of torchvision's ResNet v1.5 on one image, from the architecture:
    7x7/2 stem, 3x3/2 max-pool, stages of blocks whose first block strides (from the second
    stage on), a 1x1 projection wherever the shape changes, global pooling, the fc."""
    side, total = _conv(size, 7, 2, 3, 3, width)
    side = (side + 2 - 3) // 2 + 1
    channels = width
    for stage, blocks in enumerate(stage_sizes):
        inner = width * 2**stage
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            if bottleneck:
                out_channels = 4 * inner
                _, a = _conv(side, 1, 1, 0, channels, inner)
                out_side, b = _conv(side, 3, stride, 1, inner, inner)
                _, c = _conv(out_side, 1, 1, 0, inner, out_channels)
                total += a + b + c
            else:
                out_channels = inner
                out_side, a = _conv(side, 3, stride, 1, channels, inner)
                _, b = _conv(out_side, 3, 1, 1, inner, inner)
                total += a + b
            if stride != 1 or channels != out_channels:
                total += _conv(side, 1, stride, 0, channels, out_channels)[1]
            side, channels = out_side, out_channels
    total += channels * labels
    return 2 * total


ARCHITECTURES = {"resnet18": ((2, 2, 2, 2), False), "resnet50": ((3, 4, 6, 3), True)}


def generator(name):
    """The project's generator `name` (float32, ImageNet width) with 80 outputs."""
    config = ml_collections.ConfigDict({"name": name, "dtype": "float32", "width": 64})
    return create_generator(config, LABELS)


def shapes(model, batch, size):
    """The model's variables and an image batch as shapes: nothing is computed."""
    image = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    init = functools.partial(model.init, train=False)
    return jax.eval_shape(init, jax.random.key(0), image), image


def nested(fn):
    """`fn` jitted inside the traced function, as a step calls jitted pieces: the count has to
    go into the jit's sub-jaxpr to see anything. (A jitted function passed to `flops.count`
    itself is traced as itself, without one.)"""
    return lambda *args: jax.jit(fn)(*args)


def forward_flops(model, variables, image):
    return flops.flops(nested(functools.partial(model.apply, train=False)), variables, image)


def training_step_flops(model, variables, image):
    """The BCE step's forward and backward (train mode, gradient of every parameter)."""
    labels = jax.ShapeDtypeStruct((image.shape[0], LABELS), jnp.float32)

    def loss(params, batch_stats, image, labels):
        logits, _ = model.apply(
            {"params": params, "batch_stats": batch_stats},
            image,
            train=True,
            mutable=["batch_stats"],
        )
        return optax.sigmoid_binary_cross_entropy(logits, labels).mean()

    step = nested(jax.value_and_grad(loss))
    return flops.flops(step, variables["params"], variables["batch_stats"], image, labels)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("size", [224, 64])
def test_resnet_forward_is_the_architectures_count(name, size):
    """Within 2 % of the hand count (measured: equal). At 224 px this is the published 1.8
    (ResNet-18) and 4.1 (ResNet-50) billion multiply-adds per image."""
    batch = 2
    model = generator(name)
    counted = forward_flops(model, *shapes(model, batch, size))
    expected = batch * analytic_resnet_flops(*ARCHITECTURES[name], size, LABELS)
    assert counted == pytest.approx(expected, rel=0.02)
    if size == 224:
        published = {"resnet18": 1.82e9, "resnet50": 4.09e9}[name]  # multiply-adds, 1 image
        assert counted / batch / 2 == pytest.approx(published, rel=0.01)


def test_a_training_step_is_three_forward_passes():
    """Forward, input gradient and kernel gradient of every layer count the same, so the step
    is 3 × the forward, less the stem's input gradient (no step takes the image's gradient):
    2.93 × for ResNet-18. Within 1 % of that, and 3 × within 3 %."""
    size, batch = 64, 2
    model = generator("resnet18")
    variables, image = shapes(model, batch, size)
    forward = forward_flops(model, variables, image)
    step = training_step_flops(model, variables, image)
    stem = 2 * batch * _conv(size, 7, 2, 3, 3, 64)[1]
    assert step == pytest.approx(3 * forward - stem, rel=0.01)
    assert step == pytest.approx(3 * forward, rel=0.03)


def _xla_flops(fn, *args):
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0]
    return analysis["flops"]


def _nhwc(x, w, stride=1, padding="VALID", groups=1, dilation=1):
    return lax.conv_general_dilated(
        x,
        w,
        (stride, stride),
        padding,
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


def _small_net(kernels, x):
    """Convolutions without padding (strided and dilated, grouped 1x1, depthwise when given a
    kernel for it), then a dense layer: where XLA's count and ours count the same products."""
    first, grouped, *depthwise, dense = kernels
    y = _nhwc(x, first, stride=2, dilation=2)  # 19 -> 8 px, 3 -> 8 channels
    y = _nhwc(y, grouped, groups=2)  # 8 -> 12 channels
    if depthwise:
        y = _nhwc(y, depthwise[0], stride=2, groups=12)  # 8 -> 3 px
    return y.reshape(y.shape[0], -1) @ dense


def _kernels(depthwise):
    keys = jax.random.split(jax.random.key(0), 4)
    side = 3 if depthwise else 8
    return (
        jax.random.normal(keys[0], (3, 3, 3, 8)),
        jax.random.normal(keys[1], (1, 1, 4, 12)),
        *([jax.random.normal(keys[2], (3, 3, 1, 12))] if depthwise else []),
        jax.random.normal(keys[3], (side * side * 12, 5)),
    )


IMAGES = jnp.ones((2, 19, 19, 3))


@pytest.mark.xla_optimized  # XLA's count of the program users compile
def test_agrees_with_xla_on_the_cpu():
    """The forward: equal to XLA's count (it counts only these ops here). A training step's
    gradients of every kernel (no padded convolution, no image gradient): within 0.5 %, XLA
    also counting the loss's few element-wise ops. (Not with the depthwise layer: XLA:CPU
    rewrites a depthwise kernel gradient into a larger convolution and counts that, 13x.)"""
    kernels = _kernels(depthwise=True)
    assert flops.flops(_small_net, kernels, IMAGES) == pytest.approx(
        _xla_flops(_small_net, kernels, IMAGES), rel=1e-6
    )
    kernels = _kernels(depthwise=False)

    def loss(kernels, x):
        return jnp.sum(_small_net(kernels, x) ** 2)

    step = jax.value_and_grad(loss)
    counted = flops.flops(step, kernels, IMAGES)
    assert counted == pytest.approx(_xla_flops(step, kernels, IMAGES), rel=0.005)
    # Forward, kernel gradients, and the input gradients of all layers but the first: 3x - 1.
    forward = flops.flops(_small_net, kernels, IMAGES)
    first = flops.flops(lambda k, x: _nhwc(x, k, stride=2, dilation=2), kernels[0], IMAGES)
    assert counted == pytest.approx(3 * forward - first, rel=1e-6)


def test_grouped_convolutions_count_their_groups_only():
    """k² · (Cin / groups) · Cout · H · W · 2, and its kernel gradient (a batch-grouped
    convolution) the same."""
    x = jnp.ones((2, 9, 9, 12))
    for groups, kernel in ((3, jnp.ones((3, 3, 4, 6))), (12, jnp.ones((3, 3, 1, 12)))):
        conv = functools.partial(_nhwc, padding="SAME", groups=groups)
        cout = kernel.shape[-1]
        expected = 2 * 2 * 9 * 9 * cout * 9 * (12 // groups)
        assert flops.flops(conv, x, kernel) == expected
        kernel_grad = jax.grad(lambda k, conv=conv: conv(x, k).sum())
        assert flops.flops(kernel_grad, kernel) == expected


def test_padding_counts_input_dilation_does_not():
    """A padded convolution counts every output position against every tap (XLA counts only
    the taps that land on the image: fewer). The input gradient of a strided convolution is a
    convolution of the input-dilated output gradient: its taps on inserted zeros do not count,
    so it counts what the forward counts."""
    x, w = jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 4, 6))
    same = functools.partial(_nhwc, padding="SAME")
    assert flops.flops(same, x, w) == 2 * 8 * 8 * 9 * 4 * 6
    assert _xla_flops(same, x, w) < flops.flops(same, x, w)
    strided = functools.partial(_nhwc, stride=2, padding=((1, 1), (1, 1)))
    input_grad = jax.grad(lambda x: strided(x, w).sum())
    assert flops.flops(input_grad, x) == flops.flops(strided, x, w) == 2 * 4 * 4 * 9 * 4 * 6


def test_a_scan_multiplies_its_body():
    """n_critic critic updates are a scan in the adversarial update: its body counts n times
    (XLA's cost analysis counts a loop's body once)."""
    a = jnp.ones((16, 16))

    def chain(x, length):
        return lax.scan(lambda c, _: (c @ a, None), x, None, length=length)[0]

    one = 2 * 16**3
    assert flops.flops(functools.partial(chain, length=5), a) == 5 * one
    assert flops.flops(functools.partial(chain, length=1), a) == one
    assert _xla_flops(functools.partial(chain, length=5), a) < 2 * one


def test_a_scan_of_a_model_multiplies_it():
    """A network inside a scan (as the critic updates run) counts once per iteration."""
    model = resnet_small(num_labels=5, width=4)
    variables, image = shapes(model, 2, 16)
    once = forward_flops(model, variables, image)
    assert once > 0

    def three(variables, image):
        def body(carry, _):
            return carry, model.apply(variables, image, train=False)

        return lax.scan(body, 0, None, length=3)[1]

    assert flops.flops(three, variables, image) == 3 * once


def _matmul(x):
    return x @ x


@jax.custom_jvp
def _custom_jvp(x):
    return x @ x


_custom_jvp.defjvp(lambda primals, tangents: (_custom_jvp(primals[0]), tangents[0]))


@jax.custom_vjp
def _custom_vjp(x):
    return x @ x


_custom_vjp.defvjp(lambda x: (x @ x, x), lambda x, g: (g,))

ONE = 2 * 8**3  # one 8x8 matrix product


@pytest.mark.parametrize(
    "fn, expected, unknown_loops",
    [
        (nested(_matmul), ONE, 0),
        # a jitted function with compiler options (the trainer's steps), traced as itself
        (jax.jit(_matmul, compiler_options=runtime.CPU_OPTIONS), ONE, 0),
        (jax.checkpoint(_matmul), ONE, 0),
        (_custom_jvp, ONE, 0),
        (_custom_vjp, ONE, 0),
        # cond: the most expensive branch
        (lambda x: lax.cond(x[0, 0] > 0, lambda y: y @ y @ y, lambda y: y, x), 2 * ONE, 0),
        # while with a constant start, bound and step: its trip count
        (
            lambda x: lax.while_loop(lambda c: c[0] < 7, lambda c: (c[0] + 2, c[1] @ c[1]), (0, x))[
                1
            ],
            4 * ONE,
            0,
        ),
        # while with a bound only known when it runs: once, and noted
        (lambda x: lax.fori_loop(0, x[0, 0].astype(jnp.int32), lambda i, c: c @ c, x), ONE, 1),
        (jax.jit(lambda x: jax.jit(_matmul)(jax.checkpoint(_matmul)(x))), 2 * ONE, 0),
    ],
    ids=[
        "jit",
        "jit_with_options",
        "checkpoint",
        "custom_jvp",
        "custom_vjp",
        "cond",
        "while",
        "while_unknown",
        "nested",
    ],
)
def test_every_kind_of_sub_jaxpr_is_counted(fn, expected, unknown_loops):
    count = flops.count(fn, jnp.ones((8, 8)))
    assert count.flops == expected
    assert count.unknown_trip_counts == unknown_loops
    assert not count.unknown


def test_a_shard_map_counts_every_shard():
    """The body sees one shard's shapes; the count is the global computation's."""
    mesh = jax.make_mesh((4,), ("data",))
    x = jax.device_put(jnp.ones((16, 8)), jax.NamedSharding(mesh, P("data")))
    body = jax.shard_map(lambda x: x @ x.T, mesh=mesh, in_specs=P("data"), out_specs=P("data"))
    assert flops.flops(jax.jit(body), x) == 4 * 2 * 4 * 8 * 4
    assert flops.flops(nested(body), x) == 4 * 2 * 4 * 8 * 4


def test_dtype_does_not_change_the_count():
    """bfloat16 compute (model.dtype) does the same multiply-adds."""
    model = resnet_small(num_labels=5, width=4, dtype=jnp.bfloat16)
    reference = resnet_small(num_labels=5, width=4)
    variables, image = shapes(reference, 2, 16)
    assert forward_flops(model, variables, image) == forward_flops(reference, variables, image)
