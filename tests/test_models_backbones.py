"""The generator contract for every backbone: shapes, collections, dropout, bfloat16.

Training-mode checks use `jax.eval_shape` (tracing only) so full-size networks stay cheap.
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.models import GENERATORS

FEATURES = {
    "resnet_small": 512,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "vgg16": 4096,
    "inception_v3": 2048,
}
SIZES = {"vgg16": 32, "inception_v3": 75}


def _build(name, **kwargs):
    module, constructor = GENERATORS[name]
    return getattr(importlib.import_module(module), constructor)(**kwargs)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_train_step_shapes_and_collections(name):
    model = _build(name, num_labels=7, dtype=jnp.float32, width=64)
    x = jnp.zeros((2, SIZES.get(name, 64), SIZES.get(name, 64), 3))
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    variables = jax.eval_shape(lambda: model.init(keys, x, train=False))
    assert set(variables) <= {"params", "batch_stats"}
    assert variables["params"]["head"]["kernel"].shape == (FEATURES[name], 7)

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
    assert features.shape == (2, FEATURES[name]) and features.dtype == jnp.float32
    if name == "vgg16":
        assert "batch_stats" not in variables and dict(updates) == {}
    else:
        assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(
            variables["batch_stats"]
        )


@pytest.mark.parametrize("name", ["vgg16", "inception_v3"])
def test_width_other_than_64_is_refused_outside_resnets(name):
    with pytest.raises(ValueError, match="width"):
        _build(name, num_labels=3, dtype=jnp.float32, width=32)


def test_vgg_dropout_uses_the_dropout_rng_and_eval_is_deterministic():
    model = _build("vgg16", num_labels=5, dtype=jnp.float32, width=64)
    x = jnp.asarray(np.random.RandomState(0).randn(2, 32, 32, 3), jnp.float32)
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)

    @jax.jit
    def train(key):
        return model.apply(
            variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}
        )[0]

    a, b = train(jax.random.key(1)), train(jax.random.key(2))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, train(jax.random.key(1)))
    evaluate = jax.jit(lambda v: model.apply(v, x, train=False))
    np.testing.assert_array_equal(evaluate(variables), evaluate(variables))
    # Callers that keep an (empty) batch_stats collection for every model work too.
    np.testing.assert_array_equal(evaluate({**variables, "batch_stats": {}}), evaluate(variables))


def test_bfloat16_computes_in_bfloat16_with_float32_parameters():
    x = jnp.asarray(np.random.RandomState(0).randn(2, 64, 64, 3), jnp.float32)
    full = _build("resnet18", num_labels=10, dtype=jnp.float32, width=64)
    half = _build("resnet18", num_labels=10, dtype=jnp.bfloat16, width=64)
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
