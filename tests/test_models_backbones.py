"""The generator contract for every backbone: shapes, collections, dropout, bfloat16, and the
backbone specs (`jaxgan.models.GENERATORS`) checked against the networks themselves.

Training-mode checks use `jax.eval_shape` (tracing only) so full-size networks stay cheap.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.base_config import get_base_config, set_backbone
from jaxgan.models import GENERATORS, PRETRAINED_WIDTH, build_generator


def _size(name):
    """A cheap input side the backbone takes: its smallest, or 64 px if it takes any."""
    return GENERATORS[name].min_image_size if GENERATORS[name].min_image_size > 1 else 64


# The deepest backbones at full width trace for seconds: the whole suite checks them.
FULL_SIZE = ("resnet101", "resnet152", "inception_v3")
CASES = [
    pytest.param(name, PRETRAINED_WIDTH, marks=[pytest.mark.slow] if name in FULL_SIZE else [])
    for name in sorted(GENERATORS)
] + [
    (name, 16)
    for name in ("resnet_small", "resnet50")  # features scale with the width
]


@pytest.mark.parametrize("name,width", CASES)
def test_train_step_shapes_and_collections(name, width):
    model = build_generator(name, num_labels=7, dtype=jnp.float32, width=width)
    size = _size(name)
    x = jnp.zeros((2, size, size, 3))
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    variables = jax.eval_shape(lambda: model.init(keys, x, train=False))
    assert set(variables) <= {"params", "batch_stats"}
    features_dim = GENERATORS[name].features(width)
    assert variables["params"]["head"]["kernel"].shape == (features_dim, 7)

    def train_apply(variables, features_only):
        return model.apply(
            variables,
            x,
            train=True,
            features_only=features_only,
            mutable=["batch_stats"],
            rngs={"dropout": jax.random.key(2)},
        )

    (logits, updates) = jax.eval_shape(lambda v: train_apply(v, False), variables)
    (features, _) = jax.eval_shape(lambda v: train_apply(v, True), variables)
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    assert features.shape == (2, features_dim) and features.dtype == jnp.float32
    if "batch_stats" not in variables:  # VGG-16 has no BatchNorm
        assert dict(updates) == {}
    else:
        assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(
            variables["batch_stats"]
        )


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_width_is_refused_where_the_spec_says_it_is_fixed(name):
    if GENERATORS[name].width_configurable:
        assert build_generator(name, num_labels=3, width=32).width == 32
    else:
        with pytest.raises(ValueError, match=f"model.width=32 does not apply to {name}"):
            build_generator(name, num_labels=3, width=32)


@pytest.mark.parametrize("name", sorted(n for n, s in GENERATORS.items() if s.image_size))
def test_set_backbone_takes_the_input_from_the_spec(name):
    config = set_backbone(get_base_config(), name)
    assert config.model.name == name
    assert config.data.image_size == GENERATORS[name].image_size
    assert config.data.normalization == GENERATORS[name].normalization


def test_set_backbone_refuses_a_backbone_without_an_input_convention():
    with pytest.raises(ValueError, match="unknown backbone variant 'resnet_small'"):
        set_backbone(get_base_config(), "resnet_small")


@pytest.mark.slow  # VGG-16's 138 M parameters
@pytest.mark.xla_optimized  # the full VGG-16's 138M weights draw faster from optimised code
def test_vgg_dropout_is_active_in_training_only():
    model = build_generator("vgg16", num_labels=5)
    x = jnp.asarray(np.random.RandomState(0).randn(2, 32, 32, 3), jnp.float32)
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)

    @functools.partial(jax.jit, static_argnames="train")
    def apply(variables, key, train):
        return model.apply(variables, x, train=train, rngs={"dropout": key})

    @jax.jit
    def without_dropout(variables):
        return model.clone(dropout_rate=0.0).apply(variables, x, train=True)

    a, b = apply(variables, jax.random.key(1), True), apply(variables, jax.random.key(2), True)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, apply(variables, jax.random.key(1), True))
    # Evaluation ignores the dropout key it is given (a dropout left on in eval would not) and
    # computes what training computes with dropout removed (VGG has no BatchNorm).
    evaluated = apply(variables, jax.random.key(1), False)
    np.testing.assert_array_equal(evaluated, apply(variables, jax.random.key(2), False))
    np.testing.assert_allclose(evaluated, without_dropout(variables), rtol=1e-5, atol=1e-5)
    assert not np.allclose(evaluated, a)
    # Callers that keep an (empty) batch_stats collection for every model work too.
    with_stats = {**variables, "batch_stats": {}}
    np.testing.assert_array_equal(apply(with_stats, jax.random.key(1), False), evaluated)


def test_bfloat16_computes_in_bfloat16_with_float32_parameters():
    x = jnp.asarray(np.random.RandomState(0).randn(2, 64, 64, 3), jnp.float32)
    full = build_generator("resnet18", num_labels=10, dtype=jnp.float32)
    half = build_generator("resnet18", num_labels=10, dtype=jnp.bfloat16)
    variables = jax.jit(lambda x: full.init(jax.random.key(0), x, train=False))(x)
    half_variables = jax.eval_shape(lambda x: half.init(jax.random.key(0), x, train=False), x)
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(half_variables))
    # bf16 activations: the convolutions' outputs are bfloat16 inside the network.
    jaxpr = str(jax.make_jaxpr(lambda v: half.apply(v, x, train=False))(variables))
    assert "bf16[2,32,32,64]" in jaxpr
    expected = jax.jit(lambda v: full.apply(v, x, train=False))(variables)
    logits = jax.jit(lambda v: half.apply(v, x, train=False))(variables)
    assert logits.dtype == jnp.float32
    scale = float(jnp.abs(expected).max())
    assert float(jnp.abs(logits - expected).max()) < 0.1 * scale
    assert not np.array_equal(np.asarray(logits), np.asarray(expected))
